import { testNeeding } from '../helpers/requirements.ts';
import { levelLogBytes, poll } from '../helpers/api.ts';
import { runCli } from '../helpers/daemon-process.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startNginx } from '../helpers/nginx.ts';
import { fixture, makeProgram, sha256 } from '../helpers/programs.ts';
import { ADMIN_TOKEN } from '../helpers/tokens.ts';
import { publishBytes, startRunDone, storeDir, synced, syncingGateway } from './sync-helpers.ts';

const test = testNeeding('nginx');

// A store as a site would host it: written by `modelferry publish`, served by nginx (its own
// ETag, Last-Modified, Range), synced by a gateway. nginx's access log says what went over
// the wire.

const MAC = '02:00:00:00:10:01';

test('a gateway syncs a store written by publish and served by nginx; an unchanged store costs one conditional request and no writes', async (t) => {
  const store = await storeDir(t);
  await publishBytes(store, 'kws', '1', fixture('add.pte'), { assign: 'default' });
  const nginx = await startNginx(t, store);
  const gw = await syncingGateway(t, `${nginx.url}/manifest.json`);
  t.like((await startRunDone(gw)).lastOutcome, { result: 'updated', fetched: 1 });
  const answer = await poll(gw, MAC);
  t.is(answer.status, 200);
  t.like(answer.json.model, { name: 'kws', version: '1', sha256: sha256(fixture('add.pte')) });

  const before = await levelLogBytes(gw);
  const requests = (await nginx.accessLog()).length;
  t.like(await synced(t, gw, 'unchanged'), { bytes: 0, fetched: 0 });
  const log = await nginx.accessLog();
  t.deepEqual(log.slice(requests).map((l) => [l.uri, l.status, l.bodyBytes]), [['/manifest.json', 304, 0]]);
  t.true(log.at(-1)!.bytesSent < 400, `a 304 of ${log.at(-1)!.bytesSent} bytes`);
  t.is(await levelLogBytes(gw), before, 'an unchanged store writes nothing');
});

test('an incremental sync in which 1 of 50 models changed transfers that model and the manifest, nothing else; modelferry sync runs it', async (t) => {
  const store = await storeDir(t);
  const size = 256 * 1024;
  for (let i = 0; i < 50; i++) await publishBytes(store, `model-${i}`, '1', makeProgram(size), { assign: i === 0 ? 'default' : undefined });
  const nginx = await startNginx(t, store);
  const gw = await syncingGateway(t, `${nginx.url}/manifest.json`);
  t.like((await startRunDone(gw)).lastOutcome, { result: 'updated', fetched: 50 });

  const changed = makeProgram(size);
  await publishBytes(store, 'model-17', '2', changed);
  const from = (await nginx.accessLog()).length;
  const cli = await runCli(['sync', '--gateway', gw.url, '--token', ADMIN_TOKEN]);
  t.is(cli.code, 0, cli.stderr);
  t.like(JSON.parse(cli.stdout), { result: 'updated', fetched: 1, models: 51 });

  const requests = (await nginx.accessLog()).slice(from);
  t.deepEqual(requests.map((r) => [r.uri, r.status]), [
    ['/manifest.json', 200],
    [`/artifacts/${sha256(changed)}`, 200],
    ['/manifest.json', 304],
  ]);
  const total = requests.reduce((sum, r) => sum + r.bytesSent, 0);
  const manifest = requests[0]!.bytesSent;
  t.log(`incremental sync, 1 of 50 models changed: ${total} bytes over the wire for a ${size}-byte model (${(total / size).toFixed(3)}x; manifest ${manifest} bytes, artifact ${requests[1]!.bytesSent}, recheck ${requests[2]!.bytesSent}); a full sync moved ${50 * size} bytes of artifacts`);
  t.true(total < size + manifest + 1024);
  t.is((await (await gw.fetch('/v1/models/model-17', { token: ADMIN_TOKEN })).json() as { versions: unknown[] }).versions.length, 2);
});

test('modelferry sync against a gateway with no upstream exits 1 with no_upstream', async (t) => {
  const gw = await startGateway(t);
  const cli = await runCli(['sync', '--gateway', gw.url, '--token', ADMIN_TOKEN]);
  t.is(cli.code, 1);
  t.regex(cli.stderr, /409 no_upstream/);
});
