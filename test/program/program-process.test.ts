import { execFile } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import test from 'ava';
import { runCli, startDaemon, type RunningDaemon } from '../helpers/daemon-process.ts';
import { Teardowns, tempDir } from '../helpers/harness.ts';
import { buildProgram } from '../helpers/program-builder.ts';
import { ADD_SHA256, fixture, fixturePath, makeProgram } from '../helpers/programs.ts';
import { ADMIN_TOKEN, ALL_TOKEN } from '../helpers/tokens.ts';
import { testNeeding } from '../helpers/requirements.ts';

// Program inspection with real processes: a gateway child process, the CLI, curl.

const execFileAsync = promisify(execFile);
const shared = new Teardowns();
let gw: RunningDaemon;

test.before(async () => {
  gw = await startDaemon(shared);
});

test.after.always(() => shared.run());

const client = () => ['--gateway', gw.url, '--token', ALL_TOKEN];

async function storedBlobs(): Promise<string[]> {
  // Pushed blobs live under <state>/blobs (docs/central-store.md "Where blobs live"); synced
  // ones under the cache folder.
  const names = [...await readdir(path.join(gw.state, 'blobs')), ...await readdir(gw.cache)];
  return names.filter((name) => /^[0-9a-f]{64}$/.test(name)).sort();
}

test('a push records what the program contains: GET /v1/models/{name}/{version} has it as program, and models prints it', async (t) => {
  const push = await runCli(['push', fixturePath('add.pte'), '--name', 'adder', '--version', '1', ...client()]);
  t.is(push.code, 0, push.stderr);
  const record = await (await gw.fetch('/v1/models/adder/1', { token: ADMIN_TOKEN })).json() as any;
  t.is(record.sha256, ADD_SHA256);
  t.like(record.program, {
    identifier: 'ET12',
    methods: [{ name: 'forward', operators: ['aten::add.out'], delegates: [], plannedMemory: { bufferSizes: [0, 48], arenaBytes: 48 } }],
    segments: { count: 1, sizes: [0] },
    requires: { operators: ['aten::add.out'], delegates: [], arenaBytes: 48 },
  });
  const models = await runCli(['models', 'adder', ...client()]);
  t.is(models.code, 0, models.stderr);
  t.deepEqual(JSON.parse(models.stdout).versions[0].program, record.program);
  // The status page says what the program needs.
  const page = await (await gw.fetch('/')).text();
  t.regex(page, /<div class="program muted">forward: 1 operator <span title="aten::add.out">\(aten::add\.out\)<\/span>, arena 48 B<\/div>/);
});

// Serial: the daemon is shared, and a push from a test running alongside would change the blob folders.
testNeeding('curl').serial('a file that claims ET12 but does not parse is refused with 415 unsupported_format naming the problem; nothing is stored', async (t) => {
  const dir = await tempDir(t);
  const damaged = Buffer.from(fixture('mul.pte'));
  damaged.writeUInt32LE(0xfffffff0, 0);
  const cases: Array<[string, Buffer, RegExp]> = [
    ['damaged-root.pte', damaged, /root offset at byte 0 points to byte \d+, outside the 1032-byte program/],
    ['truncated.pte', fixture('add.pte').subarray(0, 700), /execution_plan\[0\]/],
    ['bad-header.pte', makeProgram(4096, { length: 16 }), /extended header \(eh00\) is inconsistent: header length 16 is below 24/],
  ];
  for (const [name, bytes, reason] of cases) {
    const file = path.join(dir, name);
    await writeFile(file, bytes);
    const before = await storedBlobs();
    // curl, as a pipeline would push.
    const { stdout } = await execFileAsync('curl', ['-sS', '-X', 'PUT', '-H', `Authorization: Bearer ${ALL_TOKEN}`,
      '--data-binary', `@${file}`, '-w', '\n%{http_code}', `${gw.url}/v1/models/broken/1`]);
    const lines = stdout.trimEnd().split('\n');
    const curl = { status: lines.pop()!, body: lines.join('\n') };
    t.is(curl.status, '415', name);
    const body = JSON.parse(curl.body);
    t.is(body.error, 'unsupported_format');
    t.regex(body.message, reason, name);
    t.deepEqual(await storedBlobs(), before, `${name}: no blob kept`);
    t.deepEqual(await readdir(path.join(gw.state, 'blobs', 'tmp')), [], `${name}: no temporary file left`);
    t.is((await gw.fetch('/v1/models/broken', { token: ADMIN_TOKEN })).status, 404, `${name}: not in the catalog`);
  }
});

test('modelferry inspect reads a local file without a gateway', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'two-methods.pte');
  await writeFile(file, buildProgram({
    methods: [
      { name: 'forward', operators: ['aten::conv2d.out'], delegates: ['XnnpackBackend'], bufferSizes: [0, 1 << 20] },
      { name: 'warmup', operators: ['aten::zeros.out'], bufferSizes: [0, 256] },
    ],
    segments: [Buffer.alloc(2048, 1)],
    constantSegment: 0,
  }));
  // No --gateway and nothing listening on the default: inspect must not need one.
  const result = await runCli(['inspect', file], { env: { MODELFERRY_GATEWAY: 'http://127.0.0.1:9' } });
  t.is(result.code, 0, result.stderr);
  const printed = JSON.parse(result.stdout);
  t.is(printed.file, file);
  t.deepEqual(printed.program.methods.map((m: any) => [m.name, m.operators, m.delegates, m.plannedMemory.arenaBytes]), [
    ['forward', ['aten::conv2d.out'], ['XnnpackBackend'], 1 << 20],
    ['warmup', ['aten::zeros.out'], [], 256],
  ]);
  t.deepEqual(printed.program.segments, { count: 1, sizes: [2048] });
  t.is(printed.program.constantDataBytes, 2048);

  const broken = path.join(dir, 'broken.pte');
  await writeFile(broken, fixture('add.pte').subarray(0, 300));
  const refused = await runCli(['inspect', broken]);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /is not a readable ExecuTorch program: program\.execution_plan/);
  t.is(refused.stdout, '');
});
