import { required } from './args.ts';
import { defineCommand } from './command.ts';

export const fleet = defineCommand({
  name: 'fleet',
  summary: 'one table of every site, from the reports gateways write into the store and its prefixes',
  description: `Reads the reports that gateways with upstream.report: true write into the store
(STORE/gateways/<gateway id>.json) and into each prefix one level below it
(STORE/site-a/gateways/...), so that the top of a bucket with a prefix per site gives every
site, and prints one table: the prefix a report came from, gateway, when it last reported,
devices in sync of all, failed, pending, halted rollouts and its last sync. A gateway that
has not reported for 3 of its sync periods is marked STALE. At most 10,000 prefixes are
read; the output says when there were more. STORE is a folder or s3://BUCKET[/PREFIX]
(credentials, region and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION
and AWS_ENDPOINT_URL; it needs s3:ListBucket on STORE with delimiter / and on the
gateways/ prefixes, and s3:GetObject). --json prints the same as JSON; --write-page also
writes the table as a static page, STORE/fleet.html (no scripts, nothing loaded from
elsewhere).`,
  flags: {
    store: { placeholder: 'STORE', required: true, help: 'the store: a folder or s3://BUCKET[/PREFIX]; its prefixes one level down are read too' },
    json: { kind: 'boolean', help: 'print JSON for scripts' },
    'write-page': { kind: 'boolean', help: 'also write STORE/fleet.html' },
  },
  async run(args) {
    // Loaded here so that other commands do not pay for the store code.
    const { openStore } = await import('../central-store/store-objects.ts');
    const { fleetPage, fleetTable, readFleet } = await import('../site-reports/fleet-view.ts');
    const store = await openStore(required(args, 'store'));
    try {
      const fleet = await readFleet(store, new Date());
      if (args.flags.has('write-page')) {
        await store.writeBytes('fleet.html', Buffer.from(fleetPage(fleet)), { contentType: 'text/html; charset=utf-8', cacheControl: 'no-cache' });
      }
      console.log(args.flags.has('json') ? JSON.stringify(fleet, null, 2) : fleetTable(fleet));
      if (args.flags.has('write-page') && !args.flags.has('json')) console.log(`wrote ${store.nameOf('fleet.html')}`);
    } finally {
      store.close();
    }
    return 0;
  },
});
