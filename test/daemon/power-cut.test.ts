import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { assignHttp, startDaemon, type RunningDaemon } from '../helpers/daemon-process.ts';
import { tempDir } from '../helpers/harness.ts';
import { fixture, makeProgram, sha256 } from '../helpers/programs.ts';
import { ADMIN_TOKEN, ALL_TOKEN } from '../helpers/tokens.ts';
import { testNeeding } from '../helpers/requirements.ts';

// docs/design.md "Storage and crash safety": every acknowledged catalog
// change survives a power cut. The daemon keeps its state on an ext4 image mounted through
// a loop device in a private mount namespace. Copying the image file while the daemon runs
// captures only what reached the device, not the dirty pages in the kernel's cache: the
// copy is the disk as a power cut at that instant would leave it (docs/development.md,
// "Power cuts"). A second daemon then starts on the copy.

const run = promisify(execFile);

/** `unshare -m` with the image mounted at `mount`, then the daemon. */
function onImage(image: string, mount: string): string[] {
  return ['unshare', '-m', '--propagation', 'private', 'sh', '-c', 'mount -o loop "$0" "$1" && shift && exec "$@"', image, mount];
}

async function catalogOf(daemon: RunningDaemon) {
  const read = async (pathname: string) => await (await daemon.fetch(pathname, { token: ADMIN_TOKEN })).json() as any;
  const models = (await read('/v1/models')).models.map((m: any) => [m.name, m.version, m.sha256]).sort();
  const assignments = (await read('/v1/assignments')).assignments.map((a: any) => [a.selector, a.model, a.version]).sort();
  const groups = (await read('/v1/groups')).groups.map((g: any) => [g.name, g.members]).sort();
  return { models, assignments, groups };
}

testNeeding('ext4-image')('what was acknowledged survives a power cut: a copy of the disk taken while the daemon runs holds every model, assignment and group, each blob with its sha256', async (t) => {
  const dir = await tempDir(t, 'modelferry-power-');
  const image = path.join(dir, 'disk.img');
  const copy = path.join(dir, 'after-power-cut.img');
  await run('truncate', ['-s', '128M', image]);
  await run('mkfs.ext4', ['-q', '-F', image]);
  for (const mount of ['mnt', 'mnt2']) await mkdir(path.join(dir, mount));
  const paths = (mount: string) => ({ paths: { state: path.join(dir, mount, 'state'), cache: path.join(dir, mount, 'cache') } });

  const first = await startDaemon(t, { dir, prefix: onImage(image, path.join(dir, 'mnt')), config: paths('mnt') });
  const programs = [makeProgram(300_000), makeProgram(200_000), fixture('add.pte')];
  for (const [i, bytes] of programs.entries()) {
    const response = await first.fetch(`/v1/models/kws/${i + 1}`, { method: 'PUT', body: bytes, token: ALL_TOKEN });
    t.is(response.status, 201);
  }
  await assignHttp(first, 'default', 'kws', '1');
  await assignHttp(first, '02:00:00:00:00:07', 'kws', '3');
  const group = await first.fetch('/v1/groups/lab', { method: 'PUT', token: ALL_TOKEN, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ members: ['02:00:00:00:00:08'] }) });
  t.is(group.status, 201);
  t.is((await first.fetch('/v1/models/kws/2', { method: 'DELETE', token: ALL_TOKEN })).status, 204);
  const acknowledged = await catalogOf(first);

  // The power cut: the disk as it is now, whatever the kernel still holds in its cache.
  await run('cp', ['--sparse=always', image, copy]);
  await first.kill();

  const second = await startDaemon(t, { dir, prefix: onImage(copy, path.join(dir, 'mnt2')), config: paths('mnt2') });
  t.deepEqual(await catalogOf(second), acknowledged);
  for (const [, , digest] of acknowledged.models as Array<[string, string, string]>) {
    const artifact = await second.fetch(`/v1/artifacts/${digest}`);
    t.is(artifact.status, 200);
    t.is(sha256(Buffer.from(await artifact.arrayBuffer())), digest);
  }
  t.is((await second.fetch('/v1/devices/02:00:00:00:00:07/model')).status, 200);
  await writeFile(path.join(dir, 'done'), '');
});
