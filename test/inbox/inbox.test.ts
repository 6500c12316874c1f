import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { testNeeding } from '../helpers/requirements.ts';
import { delay } from '../helpers/api.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';
import { tempDir, until } from '../helpers/harness.ts';
import { ADD_SHA256, fixture, makeProgram, sha256 } from '../helpers/programs.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';
import { generateKeyPair, signModel } from '../../daemon/signing/signature.ts';

// docs/drop-folder.md: the drop folder, with real files, real chokidar, real rsync, in-place writers,
// a writer killed half-way, a restart with files waiting and hostile drops.

// Long enough that the pauses of the writers below (300 ms) never look like a finished copy,
// even on a loaded machine.
const SETTLE = '2';

async function inboxGateway(t: ExecutionContext, overrides: Record<string, string> = {}): Promise<{ gw: TestGateway; inbox: string }> {
  const dir = await tempDir(t, 'modelferry-inbox-');
  const inbox = path.join(dir, 'inbox');
  await mkdir(inbox);
  const gw = await startGateway(t, { 'inbox.dir': inbox, 'inbox.settleSeconds': SETTLE, 'inbox.checkSeconds': '1', ...overrides }, { logs: true });
  return { gw, inbox };
}

async function model(gw: TestGateway, name: string, version: string): Promise<{ status: number; body: any }> {
  const response = await gw.fetch(`/v1/models/${name}/${version}`, { token: ALL_TOKEN });
  return { status: response.status, body: await response.json() };
}

/** Waits until `folder` (accepted/ or rejected/) holds an entry ending in `suffix`. */
async function filed(inbox: string, folder: 'accepted' | 'rejected', suffix: string): Promise<string> {
  try {
    return await until(`${suffix} in ${folder}/`, async () => {
      const names = await readdir(path.join(inbox, folder)).catch(() => [] as string[]);
      const found = names.find((name) => name.endsWith(`-${suffix}`));
      return found === undefined ? undefined : path.join(inbox, folder, found);
    });
  } catch (error) {
    const rejected = await readdir(path.join(inbox, 'rejected')).catch(() => [] as string[]);
    const reasons = await Promise.all(rejected.filter((n) => n.endsWith('.error.txt')).map((n) => readFile(path.join(inbox, 'rejected', n), 'utf8')));
    throw new Error(`${(error as Error).message}; inbox holds ${(await readdir(inbox)).join(', ')}; refused: ${reasons.join(' | ')}`);
  }
}

/** Waits until the gateway logged a line whose message matches `pattern`. */
function logged(gw: TestGateway, pattern: RegExp): Promise<unknown> {
  return until(`a log line matching ${pattern}`, async () => gw.logs().find((line) => pattern.test(String(line.msg))));
}

async function refusal(inbox: string, name: string): Promise<string> {
  return readFile(await filed(inbox, 'rejected', `${name}.error.txt`), 'utf8');
}

/** Writes `bytes` in two halves with a pause between, in place, as scp or cp do. */
async function writeInPlace(file: string, bytes: Buffer, pauseMs: number): Promise<void> {
  const handle = await open(file, 'w');
  await handle.write(bytes.subarray(0, bytes.length >> 1));
  await delay(pauseMs);
  await handle.write(bytes.subarray(bytes.length >> 1));
  await handle.close();
}

test('name@version.pte written in place is taken once complete, filed in accepted/ with a date, and the model is served', async (t) => {
  const { gw, inbox } = await inboxGateway(t);
  const bytes = makeProgram(200_000);
  // Paused for less than the settle time: the half-written file must not be taken.
  await writeInPlace(path.join(inbox, 'kws@1.0.pte'), bytes, 300);
  const accepted = await filed(inbox, 'accepted', 'kws@1.0.pte');
  t.regex(path.basename(accepted), /^\d{8}T\d{6}Z-kws@1\.0\.pte$/);
  const { status, body } = await model(gw, 'kws', '1.0');
  t.is(status, 200);
  t.is(body.sha256, sha256(bytes));
  t.is(body.size, bytes.length);
  t.deepEqual(await readdir(path.join(inbox, 'rejected')), []);
  t.false(existsSync(path.join(inbox, 'kws@1.0.pte')));
});

test('a .pte with a .json sidecar takes name, version and assign from the sidecar, whichever arrives first', async (t) => {
  const { gw, inbox } = await inboxGateway(t);
  // Sidecar first.
  await writeFile(path.join(inbox, 'build-17.json'), JSON.stringify({ name: 'vad', version: '17', assign: 'default' }));
  await delay(300);
  await writeFile(path.join(inbox, 'build-17.pte'), fixture('add.pte'));
  await filed(inbox, 'accepted', 'build-17.pte');
  await filed(inbox, 'accepted', 'build-17.json');
  t.is((await model(gw, 'vad', '17')).body.sha256, ADD_SHA256);
  const poll = await (await gw.fetch('/v1/devices/02:00:00:00:14:01/model')).json() as any;
  t.like(poll.model, { name: 'vad', version: '17' });
  // Program first: a stem that is not name@version waits for its sidecar.
  await writeFile(path.join(inbox, 'build-18.pte'), fixture('mul.pte'));
  await logged(gw, /build-18\.pte waits for build-18\.json/);
  t.true(existsSync(path.join(inbox, 'build-18.pte')), 'still waiting for its sidecar');
  t.is((await model(gw, 'vad', '18')).status, 404);
  await writeFile(path.join(inbox, 'build-18.json'), JSON.stringify({ name: 'vad', version: '18', sha256: sha256(fixture('mul.pte')) }));
  await filed(inbox, 'accepted', 'build-18.pte');
  t.is((await model(gw, 'vad', '18')).status, 200);
});

test('a sidecar carries a v2 signature as modelferry sign prints it (signature, keyId, signatureSeq); one whose sequence was changed is refused', async (t) => {
  const key = generateKeyPair();
  const { gw, inbox } = await inboxGateway(t, { 'trust.keys': JSON.stringify([{ publicKey: key.publicKey }]) });
  const bytes = fixture('add.pte');
  const { signature, keyId } = signModel(key.privateKeyPem, { name: 'kws', version: '5', sha256: ADD_SHA256, size: bytes.length, seq: '9007199254740993' });
  await writeFile(path.join(inbox, 'signed.json'), JSON.stringify({ name: 'kws', version: '5', signature, keyId, signatureSeq: '9007199254740993' }));
  await writeFile(path.join(inbox, 'signed.pte'), bytes);
  await filed(inbox, 'accepted', 'signed.pte');
  t.like((await model(gw, 'kws', '5')).body, { signature, keyId, signatureSeq: '9007199254740993' });

  const six = signModel(key.privateKeyPem, { name: 'kws', version: '6', sha256: ADD_SHA256, size: bytes.length, seq: '7' });
  await writeFile(path.join(inbox, 'replayed.json'), JSON.stringify({ name: 'kws', version: '6', signature: six.signature, keyId, signatureSeq: '8' }));
  await writeFile(path.join(inbox, 'replayed.pte'), bytes);
  t.regex(await refusal(inbox, 'replayed.pte'), /signature/i);
  t.is((await model(gw, 'kws', '6')).status, 404);
});

testNeeding('rsync')('rsync (temporary .name.XXXXXX, then rename) is taken after the rename, with the exact bytes', async (t) => {
  const { gw, inbox } = await inboxGateway(t);
  const source = await tempDir(t);
  const bytes = makeProgram(3 * 1024 * 1024);
  await writeFile(path.join(source, 'asr@3.pte'), bytes);
  // Slow enough that the temporary file exists for a while, longer than the settle time.
  const child = spawn('rsync', ['--bwlimit=1500', path.join(source, 'asr@3.pte'), `${inbox}/`], { stdio: 'ignore' });
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let sawTemporary = false;
  const done = new Promise<number | null>((resolve) => child.once('close', resolve));
  while (child.exitCode === null) {
    if ((await readdir(inbox)).some((name) => name.startsWith('.asr@3.pte.'))) sawTemporary = true;
    await delay(100);
  }
  t.is(await done, 0);
  t.true(sawTemporary, 'rsync wrote a temporary name first');
  await filed(inbox, 'accepted', 'asr@3.pte');
  t.is((await model(gw, 'asr', '3')).body.sha256, sha256(bytes));
  t.deepEqual(await readdir(path.join(inbox, 'rejected')), []);
});

test('a copy killed half-way is never stored: refused as an incomplete program once it stops growing', async (t) => {
  const { gw, inbox } = await inboxGateway(t);
  const bytes = makeProgram(400_000);
  const source = await tempDir(t);
  await writeFile(path.join(source, 'full.pte'), bytes);
  // A writer that copies half, then dies (SIGKILL) with the file open.
  const script = `const fs=require('fs');const b=fs.readFileSync(${JSON.stringify(path.join(source, 'full.pte'))});const fd=fs.openSync(${JSON.stringify(path.join(inbox, 'cut@1.pte'))},'w');fs.writeSync(fd,b,0,b.length>>1);setInterval(()=>{},1000);`;
  const writer = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  t.teardown(() => { if (writer.exitCode === null) writer.kill('SIGKILL'); });
  const cut = path.join(inbox, 'cut@1.pte');
  await until('half the program written', async () => (((await stat(cut).catch(() => null))?.size ?? 0) >= bytes.length >> 1 ? true : undefined));
  writer.kill('SIGKILL');
  const text = await refusal(inbox, 'cut@1.pte');
  t.regex(text, /not a complete ExecuTorch program/);
  t.is((await model(gw, 'cut', '1')).status, 404);
});

test('files dropped while the gateway was down are taken at start; a copy still being written across the restart is waited out', async (t) => {
  const { gw, inbox } = await inboxGateway(t);
  await gw.stop();
  await writeFile(path.join(inbox, 'early@1.pte'), fixture('add.pte'));
  // An in-place writer that started while the gateway was down and goes on after it is up:
  // 20 pieces, 300 ms apart (shorter than the settle time).
  const bytes = makeProgram(300_000);
  const handle = await open(path.join(inbox, 'late@1.pte'), 'w');
  const piece = Math.ceil(bytes.length / 20);
  await handle.write(bytes.subarray(0, piece));
  const writing = (async () => {
    for (let offset = piece; offset < bytes.length; offset += piece) {
      await delay(300);
      await handle.write(bytes.subarray(offset, offset + piece));
    }
    await handle.close();
  })();
  await gw.restart();
  await writing;
  await filed(inbox, 'accepted', 'late@1.pte');
  await filed(inbox, 'accepted', 'early@1.pte');
  t.is((await model(gw, 'late', '1')).body.sha256, sha256(bytes));
  t.is((await model(gw, 'early', '1')).body.sha256, ADD_SHA256);
  t.deepEqual(await readdir(path.join(inbox, 'rejected')), []);
});

test('a burst of 50 files at once is taken completely', async (t) => {
  const { gw, inbox } = await inboxGateway(t);
  const programs = Array.from({ length: 50 }, (_, i) => makeProgram(2000 + i));
  const staging = path.join(inbox, '..', 'staging');
  await mkdir(staging);
  await Promise.all(programs.map((bytes, i) => writeFile(path.join(staging, `burst@${i}.pte`), bytes)));
  await Promise.all(programs.map((_, i) => rename(path.join(staging, `burst@${i}.pte`), path.join(inbox, `burst@${i}.pte`))));
  await until('50 files in accepted/', async () => ((await readdir(path.join(inbox, 'accepted')).catch(() => [])).length >= 50 ? true : undefined), 60_000);
  t.is((await readdir(path.join(inbox, 'accepted'))).length, 50);
  const { versions } = await (await gw.fetch('/v1/models/burst', { token: ALL_TOKEN })).json() as { versions: Array<{ version: string; sha256: string }> };
  t.is(versions.length, 50);
  for (const { version, sha256: digest } of versions) t.is(digest, sha256(programs[Number(version)]!));
});

test('an inbox folder that appears after start (a USB stick mounted later) is picked up', async (t) => {
  const dir = await tempDir(t, 'modelferry-inbox-');
  const inbox = path.join(dir, 'usb');
  const gw = await startGateway(t, { 'inbox.dir': inbox, 'inbox.settleSeconds': SETTLE, 'inbox.checkSeconds': '1' });
  const staging = path.join(dir, 'stick');
  await mkdir(staging);
  await writeFile(path.join(staging, 'kws@7.pte'), fixture('mul.pte'));
  await rename(staging, inbox);
  await filed(inbox, 'accepted', 'kws@7.pte');
  t.is((await model(gw, 'kws', '7')).status, 200);
});

test('hostile drops are refused with a sentence, and nothing outside the inbox is read, moved or changed', async (t) => {
  const { gw, inbox } = await inboxGateway(t, { 'artifacts.maxBytes': '64 KiB' });
  const outside = await tempDir(t);
  const secret = path.join(outside, 'secret.pte');
  await writeFile(secret, fixture('add.pte'));
  const huge = path.join(outside, 'huge.pte');
  await writeFile(huge, '');
  await truncate(huge, 8 * 1024 ** 3);
  await writeFile(path.join(inbox, 'good@1.pte'), fixture('add.pte'));
  await filed(inbox, 'accepted', 'good@1.pte');

  await symlink(secret, path.join(inbox, 'link@1.pte'));
  await symlink('/dev/zero', path.join(inbox, 'zero@1.pte'));
  await symlink(huge, path.join(inbox, 'huge@1.pte'));
  await link(secret, path.join(inbox, 'hard@1.pte'));
  spawnSync('mkfifo', [path.join(inbox, 'fifo@1.pte')]);
  await mkdir(path.join(inbox, 'folder@1.pte'));
  await writeFile(path.join(inbox, 'text@1.pte'), 'this is not a program\n');
  await writeFile(path.join(inbox, 'big@1.pte'), makeProgram(100 * 1024));
  await writeFile(path.join(inbox, 'Bad Name@1.pte'), fixture('add.pte'));
  await writeFile(path.join(inbox, 'notjson.pte'), fixture('add.pte'));
  await writeFile(path.join(inbox, 'notjson.json'), '{ name: kws');
  await writeFile(path.join(inbox, 'trick.pte'), fixture('add.pte'));
  await writeFile(path.join(inbox, 'trick.json'), JSON.stringify({ name: '../../etc/passwd', version: '1' }));
  await writeFile(path.join(inbox, 'typo.pte'), fixture('add.pte'));
  await writeFile(path.join(inbox, 'typo.json'), JSON.stringify({ name: 'kws', version: '5', asign: 'default' }));
  await writeFile(path.join(inbox, 'badsel.pte'), fixture('add.pte'));
  await writeFile(path.join(inbox, 'badsel.json'), JSON.stringify({ name: 'kws', version: '6', assign: '../../default' }));
  await writeFile(path.join(inbox, 'good@1.pte'), fixture('mul.pte'));

  const cases: Array<[string, RegExp]> = [
    ['link@1.pte', /is a symbolic link/],
    ['zero@1.pte', /is a symbolic link/],
    ['huge@1.pte', /is a symbolic link/],
    ['hard@1.pte', /hard link/],
    ['fifo@1.pte', /is a named pipe, not a file/],
    ['folder@1.pte', /is a folder, not a file/],
    ['text@1.pte', /not a complete ExecuTorch program/],
    ['big@1.pte', /too big: the gateway takes models up to 65536 bytes/],
    ['Bad Name@1.pte', /name or version is not valid/],
    ['notjson.pte', /notjson\.json is not a usable sidecar: it is not JSON/],
    ['trick.pte', /name or version is not valid/],
    ['typo.pte', /a field the gateway does not know: "asign"/],
    ['badsel.pte', /"assign" in the sidecar is not a device, group or default/],
    ['good@1.pte', /already on the gateway with different content/],
  ];
  for (const [name, expected] of cases) t.regex(await refusal(inbox, name), expected, name);
  // The sidecars went with their programs.
  await filed(inbox, 'rejected', 'notjson.json');
  // Nothing outside changed; nothing hostile reached the catalog.
  t.deepEqual(await readFile(secret), fixture('add.pte'));
  t.is((await stat(huge)).size, 8 * 1024 ** 3);
  t.deepEqual((await readdir(outside)).sort(), ['huge.pte', 'secret.pte']);
  const { models } = await (await gw.fetch('/v1/models', { token: ALL_TOKEN })).json() as { models: Array<{ name: string; version: string }> };
  t.deepEqual(models.map((m) => `${m.name}@${m.version}`), ['good@1']);
  t.is((await model(gw, 'good', '1')).body.sha256, ADD_SHA256);
  t.deepEqual((await readdir(inbox)).sort(), ['accepted', 'rejected']);
});

test('a rejected/ replaced by a symbolic link to another folder stops filing: drops stay put and nothing is written there', async (t) => {
  const { gw, inbox } = await inboxGateway(t);
  await writeFile(path.join(inbox, 'first@1.pte'), 'not a program');
  await refusal(inbox, 'first@1.pte');
  const outside = await tempDir(t);
  await rename(path.join(inbox, 'rejected'), path.join(inbox, 'old-rejected'));
  await symlink(outside, path.join(inbox, 'rejected'));
  await writeFile(path.join(inbox, 'second@1.pte'), 'not a program either');
  // The gateway took second@1.pte up, found where it would file it, and stopped there.
  await logged(gw, /rejected is not a folder \(a symbolic link\).*drops stay where they are/);
  t.deepEqual(await readdir(outside), []);
  t.true(existsSync(path.join(inbox, 'second@1.pte')));
});
