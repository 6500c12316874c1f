import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { freePort, runCli, spawnModelferry, startDaemon, type DaemonProcess } from '../helpers/daemon-process.ts';
import { tempDir } from '../helpers/harness.ts';
import { fixture } from '../helpers/programs.ts';
import { startGateway } from '../helpers/gateway.ts';
import { RestoreError, restoreBackup } from '../../daemon/backup/restore.ts';
import { ADMIN_TOKEN, ALL_TOKEN, PUSH_TOKEN, SYNC_TOKEN } from '../helpers/tokens.ts';
import { FAILED, IN_SYNC, PENDING, scriptedFleet } from './fleet-scenario.ts';

// `modelferry backup FILE` from a running gateway, `modelferry restore FILE` into a fresh
// state directory, and a second gateway started on it that answers as the first did.

const run = promisify(execFile);

/** What a replacement gateway must answer the same: identity, catalog, inventory, polls, bytes. */
async function answers(gw: DaemonProcess, sha256: string) {
  const json = async (pathname: string, token?: string) => {
    const response = await gw.fetch(pathname, token ? { token } : {});
    return { status: response.status, body: await response.json() as unknown };
  };
  const health = (await json('/healthz')).body as { gateway: string; revision: string; models: number; devices: number; cache: unknown };
  const polls = [];
  for (const mac of [IN_SYNC, FAILED, PENDING]) {
    const response = await gw.fetch(`/v1/devices/${mac}/model`);
    polls.push({ mac, status: response.status, etag: response.headers.get('etag'), body: await response.text() });
  }
  const artifact = await gw.fetch(`/v1/artifacts/${sha256}`);
  const manifest = await json('/v1/manifest', SYNC_TOKEN);
  // The time it was generated is now, wherever it is asked.
  delete (manifest.body as { generatedAt?: string }).generatedAt;
  return {
    identity: { gateway: health.gateway, revision: health.revision, models: health.models, devices: health.devices, cache: health.cache },
    models: await json('/v1/models', ADMIN_TOKEN),
    assignments: await json('/v1/assignments', ADMIN_TOKEN),
    groups: await json('/v1/groups', ADMIN_TOKEN),
    manifest,
    polls,
    artifact: { status: artifact.status, bytes: Buffer.from(await artifact.arrayBuffer()).toString('base64') },
  };
}

test('a gateway restored from a backup into a fresh state directory answers as the original did, with the same id and tokens', async (t) => {
  const original = await startDaemon(t);
  const fleet = await scriptedFleet(t, original);
  const before = await answers(original, fleet.v2.sha256);
  // After the polls above, which move "last seen".
  const inventoryBefore = await (await original.fetch('/v1/devices', { token: ADMIN_TOKEN })).json();

  const work = await tempDir(t);
  const file = path.join(work, 'gw.tar');
  const env = { MODELFERRY_GATEWAY: original.url };
  t.is((await original.fetch('/v1/backup', { token: PUSH_TOKEN })).status, 403, 'a push token may not take a backup');
  const saved = await runCli(['backup', file], { env: { ...env, MODELFERRY_TOKEN: ADMIN_TOKEN } });
  t.is(saved.code, 0, saved.stderr);
  t.regex(saved.stdout, new RegExp(`backed up gateway ${before.identity.gateway} to .*: \\d+ database entries, 2 blobs`));
  t.is(statSync(file).mode & 0o777, 0o600, 'the backup holds tokens: owner only');
  t.deepEqual((await readdir(work)).sort(), ['gw.tar'], 'no partial file left');
  // A plain tar that the system's tar lists.
  const { stdout: listing } = await run('tar', ['-tf', file]);
  t.deepEqual(listing.trim().split('\n').sort(), ['blobs/' + fleet.v1.sha256, 'blobs/' + fleet.v2.sha256, 'config.yaml', 'database.jsonl', 'modelferry-backup.json'].sort());

  // The replacement: an empty machine (no config, no state) and the original switched off.
  t.deepEqual(await original.stop(), { code: 0, signal: null });
  const fresh = await tempDir(t);
  const configFile = path.join(fresh, 'etc', 'config.yaml');
  const state = path.join(fresh, 'state');
  const cache = path.join(fresh, 'cache');
  const restored = await runCli(['restore', file, '--config', configFile, '--state-dir', state, '--cache-dir', cache]);
  t.is(restored.code, 0, restored.stderr);
  t.regex(restored.stdout, new RegExp(`restored gateway ${before.identity.gateway}`));
  t.is(await readFile(configFile, 'utf8'), await readFile(original.configFile, 'utf8'));
  t.is(statSync(configFile).mode & 0o777, 0o600);

  const port = await freePort();
  const replacement = spawnModelferry(t, ['serve', '--config', configFile, '--state-dir', state, '--cache-dir', cache, '--port', String(port)]);
  await replacement.waitForLog('gateway ready');
  replacement.url = `http://127.0.0.1:${port}`;
  t.deepEqual(await (await replacement.fetch('/v1/devices', { token: ADMIN_TOKEN })).json(), inventoryBefore);
  t.deepEqual(await answers(replacement, fleet.v2.sha256), before);
  // The tokens came along: the pipeline pushes to the replacement as before.
  t.is((await replacement.fetch('/v1/models/kws/3.0', { method: 'PUT', token: PUSH_TOKEN, body: fixture('add.pte') })).status, 201);
  t.deepEqual(replacement.logs().filter((line) => line.level >= 50), [], 'no errors (every catalog entry has its blob)');

  t.deepEqual(await replacement.stop(), { code: 0, signal: null });

  // A config file that differs is replaced only with --force, and kept aside.
  await writeFile(configFile, 'http:\n  port: 9999\n');
  // As install.sh leaves it for the unit (root:modelferry 0640): the service must still read it.
  const group = process.getuid?.() === 0 ? 65534 : statSync(configFile).gid;
  await chown(configFile, statSync(configFile).uid, group);
  await chmod(configFile, 0o640);
  const options = { file, statePath: path.join(fresh, 'other-state'), cachePath: cache, configTarget: configFile, force: false };
  await t.throwsAsync(restoreBackup(options), { message: /exists and differs.*--force/ });
  t.false(existsSync(options.statePath));
  const forced = await restoreBackup({ ...options, force: true });
  t.regex(forced.config.movedTo ?? '', /config\.yaml\.before-restore-/);
  t.is(await readFile(forced.config.movedTo!, 'utf8'), 'http:\n  port: 9999\n');
  t.is(await readFile(configFile, 'utf8'), await readFile(original.configFile, 'utf8'));
  t.is(statSync(configFile).mode & 0o7777, 0o640, 'the replaced config keeps its mode');
  t.is(statSync(configFile).gid, group, 'and its group');

  // A new config in a set-group-id folder (install.sh's /etc/modelferry) is readable by its group.
  const shared = path.join(fresh, 'etc-modelferry');
  await mkdir(shared);
  await chmod(shared, 0o2750);
  await restoreBackup({ ...options, statePath: path.join(fresh, 'third-state'), configTarget: path.join(shared, 'config.yaml') });
  t.is(statSync(path.join(shared, 'config.yaml')).mode & 0o7777, 0o640);
});

test('restore refuses what is not a backup, a damaged blob, a live database and existing state (unless --force), changing nothing', async (t) => {
  const gw = await startGateway(t);
  t.is((await gw.fetch('/v1/models/kws/1.0', { method: 'PUT', token: ALL_TOKEN, body: fixture('mul.pte') })).status, 201);
  const response = await gw.fetch('/v1/backup', { token: ADMIN_TOKEN });
  t.is(response.status, 200);
  t.is(response.headers.get('content-type'), 'application/x-tar');
  const archive = Buffer.from(await response.arrayBuffer());
  const dir = await tempDir(t);
  const file = path.join(dir, 'gw.tar');
  await writeFile(file, archive);
  const state = path.join(dir, 'state');
  const options = { file, statePath: state, cachePath: path.join(dir, 'cache'), configTarget: path.join(dir, 'config.yaml'), force: false };

  const notTar = path.join(dir, 'notes.txt');
  await writeFile(notTar, 'hello'.repeat(300));
  await t.throwsAsync(restoreBackup({ ...options, file: notTar }), { instanceOf: RestoreError, message: /not a modelferry backup/ });
  await t.throwsAsync(restoreBackup({ ...options, file: path.join(dir, 'missing.tar') }), { message: /cannot read/ });

  // One byte flipped inside the blob (the last member, before the two end blocks).
  const damaged = Buffer.from(archive);
  const at = damaged.length - 1024 - 512 - 10;
  damaged[at] = damaged[at]! ^ 0xff;
  await writeFile(path.join(dir, 'damaged.tar'), damaged);
  await t.throwsAsync(restoreBackup({ ...options, file: path.join(dir, 'damaged.tar') }), { message: /is damaged/ });
  t.false(existsSync(state), 'nothing in place of the state directory');
  t.deepEqual((await readdir(dir)).sort(), ['cache', 'damaged.tar', 'gw.tar', 'notes.txt'], 'no config written, no half-built database left');

  // The live gateway's own state: in use, even with --force.
  await t.throwsAsync(restoreBackup({ ...options, statePath: gw.config.paths.state, force: true }), { message: /in use: stop the gateway first/ });
  await gw.stop();
  await t.throwsAsync(restoreBackup({ ...options, statePath: gw.config.paths.state }), { message: /already holds a gateway's state.*--force/ });
  const forced = await restoreBackup({ ...options, statePath: gw.config.paths.state, force: true });
  t.regex(forced.stateMovedTo ?? '', /state\.before-restore-/);
  t.is(forced.config.action, 'not in backup', 'a gateway on the embedded default has no config file to carry');
  t.true(existsSync(path.join(gw.config.paths.state, 'CURRENT')));
  t.is(forced.manifest.blobs.length, 1);
});
