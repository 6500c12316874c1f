import { readFile } from 'node:fs/promises';
import { describeFsError } from '../fs-errors.ts';
import { option, positional, required } from './args.ts';
import { CliError } from './cli-error.ts';
import { defineCommand } from './command.ts';
import { SIGNING_FLAGS, signingChoice } from './key-commands.ts';
import { GatewayClient } from './gateway-client.ts';

const print = (value: unknown) => console.log(JSON.stringify(value, null, 2));

export const publish = defineCommand({
  name: 'publish',
  summary: 'add a model to a store (a folder or s3://BUCKET/PREFIX) that gateways sync from',
  description: `Adds a model to a store: STORE/artifacts/<sha256> first, then STORE/manifest.json,
each complete before anything names it, so a reader never sees a manifest naming a missing
artifact. STORE is a folder (served by nginx or a CDN: upload artifacts/ before
manifest.json) or s3://BUCKET/PREFIX, written directly; the bucket's credentials, region and
endpoint come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and AWS_ENDPOINT_URL
(an endpoint of your own is addressed path-style). Same checks as a push: name and version
rules, ExecuTorch format, immutable versions. With --assign, also assigns it to SELECTOR (a
MAC, group:<name> or default) in the store. Prints what it did as JSON.`,
  operands: [{ name: 'STORE' }, { name: 'FILE' }],
  flags: {
    name: { placeholder: 'NAME', required: true, help: 'model name, [a-z0-9][a-z0-9._-]' },
    version: { placeholder: 'VERSION', required: true, help: 'version, e.g. 2026.11.24-3' },
    assign: { placeholder: 'SELECTOR', help: 'also assign it in the store to a MAC, group:<name> or default' },
    ...SIGNING_FLAGS,
  },
  async run(args) {
    const store = positional(args, 0, 'STORE');
    const file = positional(args, 1, 'FILE');
    // Loaded here so that other commands do not pay for the store code.
    const { publish: publishToStore } = await import('../publish/publish.ts');
    const signing = signingChoice(args);
    let signKeyPem: string | undefined;
    if (signing.kind === 'key') {
      try {
        signKeyPem = await readFile(signing.keyFile, 'utf8');
      } catch (error) {
        throw new CliError(describeFsError(error, `--sign-key ${signing.keyFile}`));
      }
    }
    const result = await publishToStore({
      store,
      file,
      name: required(args, 'name'),
      version: required(args, 'version'),
      assign: option(args, 'assign'),
      signKeyPem,
      seq: signing.kind === 'key' ? signing.seq : undefined,
      signature: signing.kind === 'given' ? signing.claim : undefined,
    });
    print(result);
    return 0;
  },
});

export const sync = defineCommand({
  name: 'sync',
  summary: 'have the gateway sync from its upstream store now',
  description: `Has the gateway sync from its upstream store now (POST /v1/sync, admin scope) and prints
the outcome as JSON; exits 1 when the sync failed (the reason is on stderr).`,
  client: true,
  async run(args) {
    print((await GatewayClient.fromArgs(args).request('POST', '/v1/sync')).body);
    return 0;
  },
});
