import { createHash, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import YAML from 'yaml';
import { bucketOf } from '../helpers/api.ts';
import { ROOT, assignHttp, freePort, runCli, startDaemon, type RunningDaemon } from '../helpers/daemon-process.ts';
import { Teardowns, tempDir, until } from '../helpers/harness.ts';
import { ADD_SHA256, MUL_SHA256, fixture, fixturePath, makeProgram, sha256 } from '../helpers/programs.ts';
import { ADMIN_TOKEN, ALL_TOKEN, PUSH_TOKEN, TEST_TOKENS } from '../helpers/tokens.ts';

// The `modelferry` command line against a gateway running as a child process: the way a
// Jenkinsfile step or an operator at a terminal uses it. The CLI only speaks HTTP, so every
// effect is checked through the gateway's HTTP API.

const shared = new Teardowns();
let gw: RunningDaemon;

test.before(async () => {
  gw = await startDaemon(shared);
});

test.after.always(() => shared.run());

const ADD = fixturePath('add.pte');
const MUL = fixturePath('mul.pte');

/** Client options for the shared gateway with a token of every scope. */
const client = () => ['--gateway', gw.url, '--token', ALL_TOKEN];

async function json<T = any>(response: Response): Promise<T> {
  return response.json() as Promise<T>;
}

/** An ed25519 key pair as keygen writes it (PEM private key, base64 raw public key), made here. */
async function writeKeyPair(dir: string, name: string): Promise<{ keyFile: string; publicKey: string; privateKeyPem: string }> {
  const pair = generateKeyPairSync('ed25519');
  const privateKeyPem = pair.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const publicKey = Buffer.from(pair.publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('base64');
  const keyFile = path.join(dir, `${name}.key`);
  await writeFile(keyFile, privateKeyPem, { mode: 0o600 });
  return { keyFile, publicKey, privateKeyPem };
}

/** Setup that is not the subject of a test goes straight to the HTTP API. */
async function pushHttp(daemon: RunningDaemon, name: string, version: string, body: Buffer): Promise<void> {
  const response = await daemon.fetch(`/v1/models/${name}/${version}`, { method: 'PUT', body, token: ALL_TOKEN });
  if (response.status !== 201) throw new Error(`push of ${name}@${version}: ${response.status} ${await response.text()}`);
}

test('push stores the model, --assign assigns it, each step is printed and the exit code is 0', async (t) => {
  const result = await runCli(['push', ADD, '--name', 'kws', '--version', '1.0', '--assign', 'default', ...client()]);
  t.is(result.code, 0, result.stderr);
  t.regex(result.stdout, /^stored kws@1\.0 \(sha256 c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18, 1072 bytes\)$/m);
  t.regex(result.stdout, /^assigned kws@1\.0 to default$/m);

  const model = await json(await gw.fetch('/v1/models/kws/1.0', { token: ADMIN_TOKEN }));
  t.like(model, { name: 'kws', version: '1.0', sha256: ADD_SHA256, size: 1072, cached: true });
  const { assignments } = await json(await gw.fetch('/v1/assignments', { token: ADMIN_TOKEN }));
  t.like(assignments.find((a: { selector: string }) => a.selector === 'default'), { model: 'kws', version: '1.0' });
  const artifact = await gw.fetch(`/v1/artifacts/${ADD_SHA256}`);
  t.is(artifact.status, 200);
  t.deepEqual(Buffer.from(await artifact.arrayBuffer()), fixture('add.pte'));
});

test('the Jenkins recipe works with the jenkins token as the installer writes it: push --assign with exactly [push, assign]', async (t) => {
  // config/example.yaml is what systemd/install.sh installs; its jenkins token is the one
  // README.md "From Jenkins" uses with push --assign.
  const example = YAML.parse(await readFile(path.join(ROOT, 'config/example.yaml'), 'utf8')) as { auth: { tokens: Array<{ name: string; scopes: string[] }> } };
  const scopes = example.auth.tokens.find((token) => token.name === 'jenkins')!.scopes;
  t.deepEqual(scopes, ['push', 'assign']);
  const jenkins = 'jenkins-push-assign-0123456789';
  const pushOnly = 'jenkins-push-only-0123456789';
  const daemon = await startDaemon(t, { config: { auth: { tokens: [...TEST_TOKENS, { name: 'jenkins', token: jenkins, scopes }, { name: 'old-jenkins', token: pushOnly, scopes: ['push'] }] } } });

  const result = await runCli(['push', ADD, '--name', 'kws', '--version', '7', '--assign', 'default', '--gateway', daemon.url], { env: { MODELFERRY_TOKEN: jenkins } });
  t.is(result.code, 0, result.stderr);
  t.regex(result.stdout, /^stored kws@7 .*\nassigned kws@7 to default$/m);
  const answer = await daemon.fetch('/v1/devices/02:00:00:00:07:01/model');
  t.like(await json(answer), { model: { name: 'kws', version: '7', sha256: ADD_SHA256 } });

  // A push-only token (what older installs wrote) stores the model and then says plainly
  // that it was not assigned, and which scope would do it.
  const half = await runCli(['push', MUL, '--name', 'kws', '--version', '8', '--assign', 'default', '--gateway', daemon.url, '--token', pushOnly]);
  t.is(half.code, 1);
  t.regex(half.stdout, /^stored kws@8 /m);
  t.regex(half.stderr, /kws@8 is stored but not assigned to default: 403 forbidden: token "old-jenkins" lacks the assign or admin scope \(--assign needs a token with the assign or admin scope, e\.g\. scopes: \[push, assign\]\)/);
  t.like((await json(await daemon.fetch('/v1/assignments', { token: ADMIN_TOKEN }))).assignments[0], { selector: 'default', version: '7' });
});

test('a token with only the assign scope assigns, and cannot push or do admin work', async (t) => {
  const assigner = 'assign-only-token-0123456789';
  const daemon = await startDaemon(t, { config: { auth: { tokens: [...TEST_TOKENS, { name: 'rollouts', token: assigner, scopes: ['assign'] }] } } });
  await pushHttp(daemon, 'kws', '1', fixture('add.pte'));
  const as = ['--gateway', daemon.url, '--token', assigner];

  const assigned = await runCli(['assign', '02:00:00:00:07:02', 'kws', '1', ...as]);
  t.is(assigned.code, 0, assigned.stderr);
  t.like(await json(await daemon.fetch('/v1/devices/02:00:00:00:07:02/model')), { model: { name: 'kws', version: '1' } });
  const unassigned = await runCli(['unassign', '02:00:00:00:07:02', ...as]);
  t.is(unassigned.code, 0, unassigned.stderr);

  const pushed = await runCli(['push', MUL, '--name', 'kws', '--version', '2', ...as]);
  t.is(pushed.code, 1);
  t.regex(pushed.stderr, /403 forbidden: token "rollouts" lacks the push scope/);
  t.is((await daemon.fetch('/v1/models/kws/2', { token: ADMIN_TOKEN })).status, 404, 'nothing stored');
  for (const admin of [['group', 'lab', '02:00:00:00:07:03'], ['delete', 'kws', '1'], ['sync'], ['check']]) {
    const refused = await runCli([...admin, ...as]);
    t.is(refused.code, 1, `${admin[0]}: ${refused.stdout}`);
    t.regex(refused.stderr, /403 forbidden: token "rollouts" lacks the admin scope/, admin[0]);
  }
  t.is((await daemon.fetch('/v1/groups/lab', { token: ADMIN_TOKEN })).status, 404);
  t.is((await daemon.fetch('/v1/models/kws/1', { token: ADMIN_TOKEN })).status, 200);
});

test('pushing the same bytes under the same version again exits 0 and says "already stored"', async (t) => {
  const args = ['push', MUL, '--name', 'again', '--version', '3', ...client()];
  const first = await runCli(args);
  t.is(first.code, 0, first.stderr);
  t.regex(first.stdout, /^stored again@3 /m);
  const second = await runCli(args);
  t.is(second.code, 0, second.stderr);
  t.regex(second.stdout, /^already stored again@3 \(sha256 fa143f48550cdbf7ca7a161d9a6c7f79604284a3fe004f8710dc18b728f40a6e, 1032 bytes\)$/m);
  const { versions } = await json(await gw.fetch('/v1/models/again', { token: ADMIN_TOKEN }));
  t.is(versions.length, 1);
});

test('pushing other bytes under a stored version exits 1 with version_conflict on stderr and keeps the stored bytes', async (t) => {
  await pushHttp(gw, 'conflict', '1', fixture('add.pte'));
  const result = await runCli(['push', MUL, '--name', 'conflict', '--version', '1', ...client()]);
  t.is(result.code, 1);
  t.regex(result.stderr, /version_conflict/);
  t.notRegex(result.stdout, /stored/);
  const model = await json(await gw.fetch('/v1/models/conflict/1', { token: ADMIN_TOKEN }));
  t.is(model.sha256, ADD_SHA256);
});

test('MODELFERRY_GATEWAY and MODELFERRY_TOKEN stand in for --gateway and --token, and the flags win over them', async (t) => {
  const env = { MODELFERRY_GATEWAY: gw.url, MODELFERRY_TOKEN: PUSH_TOKEN };
  const pushed = await runCli(['push', ADD, '--name', 'from-env', '--version', '1'], { env });
  t.is(pushed.code, 0, pushed.stderr);
  t.is((await gw.fetch('/v1/models/from-env/1', { token: ADMIN_TOKEN })).status, 200);

  // Wrong values in the environment, right ones on the command line.
  const deadPort = await freePort();
  const overridden = await runCli(['models', 'from-env', '--gateway', gw.url, '--token', ADMIN_TOKEN], {
    env: { MODELFERRY_GATEWAY: `http://127.0.0.1:${deadPort}`, MODELFERRY_TOKEN: 'not-a-configured-token-000' },
  });
  t.is(overridden.code, 0, overridden.stderr);
  t.like(JSON.parse(overridden.stdout), { name: 'from-env', versions: [{ version: '1', sha256: ADD_SHA256 }] });
});

test('group sets members, assign --rollout --previous stages a rollout that devices see by bucket, and unassign removes it', async (t) => {
  await pushHttp(gw, 'ro', '1', fixture('add.pte'));
  await pushHttp(gw, 'ro', '2', fixture('mul.pte'));
  // One device the 30 % get the new version for, one that stays on the previous.
  const macs = Array.from({ length: 100 }, (_, i) => `02:00:00:00:01:${i.toString(16).padStart(2, '0')}`);
  const early = macs.find((mac) => bucketOf(mac, 'ro', '2') < 30)!;
  const held = macs.find((mac) => bucketOf(mac, 'ro', '2') >= 30)!;
  // group takes MACs in any accepted spelling and stores them canonically.
  const grouped = await runCli(['group', 'ro-lab', early.toUpperCase().replace(/:/g, '-'), held.replace(/:/g, ''), ...client()]);
  t.is(grouped.code, 0, grouped.stderr);
  t.regex(grouped.stdout, /group ro-lab has 2 members/);
  t.deepEqual((await json(await gw.fetch('/v1/groups/ro-lab', { token: ADMIN_TOKEN }))).members, [early, held].sort());

  const assigned = await runCli(['assign', 'group:ro-lab', 'ro', '2', '--rollout', '30', '--previous', 'ro@1', ...client()]);
  t.is(assigned.code, 0, assigned.stderr);
  t.regex(assigned.stdout, /assigned ro@2 to group:ro-lab for 30% \(others: ro@1\)/);
  const { assignments } = await json(await gw.fetch('/v1/assignments', { token: ADMIN_TOKEN }));
  t.like(assignments.find((a: { selector: string }) => a.selector === 'group:ro-lab'), {
    model: 'ro', version: '2', rollout: { percent: 30, previous: { model: 'ro', version: '1' } },
  });
  const earlyAnswer = await json(await gw.fetch(`/v1/devices/${early}/model`));
  t.is(earlyAnswer.model.sha256, MUL_SHA256);
  const heldAnswer = await json(await gw.fetch(`/v1/devices/${held}/model`));
  t.is(heldAnswer.model.sha256, ADD_SHA256);

  const removed = await runCli(['unassign', 'group:ro-lab', ...client()]);
  t.is(removed.code, 0, removed.stderr);
  t.regex(removed.stdout, /removed the assignment for group:ro-lab/);
  const after = await json(await gw.fetch('/v1/assignments', { token: ADMIN_TOKEN }));
  t.false(after.assignments.some((a: { selector: string }) => a.selector === 'group:ro-lab'));
});

test('models prints the catalog as JSON on stdout', async (t) => {
  await pushHttp(gw, 'listed', '7', fixture('add.pte'));
  const all = await runCli(['models', ...client()]);
  t.is(all.code, 0, all.stderr);
  const catalog = JSON.parse(all.stdout);
  t.like(catalog.models.find((m: { name: string }) => m.name === 'listed'), { version: '7', sha256: ADD_SHA256, size: 1072 });
  t.is(typeof catalog.revision, 'string');
});

test('devices prints the inventory as JSON, with what a device reported running', async (t) => {
  const mac = '02:00:00:00:02:01';
  // Reports are kept only for devices the catalog names: this one through a group.
  const group = await gw.fetch('/v1/groups/cli-listed', { method: 'PUT', token: ADMIN_TOKEN, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ members: [mac] }) });
  t.is(group.status, 201);
  await gw.fetch(`/v1/devices/${mac}/model`);
  const report = await gw.fetch(`/v1/devices/${mac}/report`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ state: 'installed', sha256: MUL_SHA256, model: 'ro', version: '2' }),
  });
  t.is(report.status, 204);

  const all = await runCli(['devices', ...client()]);
  t.is(all.code, 0, all.stderr);
  const { devices } = JSON.parse(all.stdout);
  t.like(devices.find((d: { mac: string }) => d.mac === mac), { address: '127.0.0.1', state: 'installed', running: { sha256: MUL_SHA256 } });
});

test('delete removes an unassigned version and refuses one still assigned with in_use', async (t) => {
  await pushHttp(gw, 'doomed', '1', fixture('add.pte'));
  await pushHttp(gw, 'doomed', '2', fixture('mul.pte'));
  await assignHttp(gw, '02:00:00:00:03:01', 'doomed', '2');

  const deleted = await runCli(['delete', 'doomed', '1', ...client()]);
  t.is(deleted.code, 0, deleted.stderr);
  t.regex(deleted.stdout, /deleted doomed@1/);
  t.is((await gw.fetch('/v1/models/doomed/1', { token: ADMIN_TOKEN })).status, 404);

  const refused = await runCli(['delete', 'doomed', '2', ...client()]);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /409 in_use/);
  t.is((await gw.fetch('/v1/models/doomed/2', { token: ADMIN_TOKEN })).status, 200);
});

test('keygen --out PREFIX writes PREFIX.key (mode 0600) and PREFIX.pub, and refuses to overwrite either', async (t) => {
  const dir = await tempDir(t);
  const prefix = path.join(dir, 'pipeline');
  const result = await runCli(['keygen', '--out', prefix]);
  t.is(result.code, 0, result.stderr);
  const printed = JSON.parse(result.stdout);

  const keyStat = await stat(`${prefix}.key`);
  t.is(keyStat.mode & 0o777, 0o600);
  const privatePem = await readFile(`${prefix}.key`, 'utf8');
  t.regex(privatePem, /^-----BEGIN PRIVATE KEY-----/);
  const publicText = (await readFile(`${prefix}.pub`, 'utf8')).trim();
  const raw = Buffer.from(publicText, 'base64');
  t.is(raw.length, 32);
  t.is(printed.publicKey, publicText);
  t.is(printed.keyId, createHash('sha256').update(raw).digest('hex').slice(0, 16));
  // The public file belongs to the private key.
  const derived = createPublicKey(privatePem).export({ format: 'jwk' }).x;
  t.is(Buffer.from(derived!, 'base64url').toString('base64'), publicText);

  const again = await runCli(['keygen', '--out', prefix]);
  t.is(again.code, 1);
  t.regex(again.stderr, /EEXIST|exists/);
  t.is(await readFile(`${prefix}.key`, 'utf8'), privatePem);
  t.is((await readFile(`${prefix}.pub`, 'utf8')).trim(), publicText);

  // Only the public half in the way: no private key is made whose public key is lost.
  const other = path.join(dir, 'other');
  await writeFile(`${other}.pub`, 'somebody else\n');
  const blocked = await runCli(['keygen', '--out', other]);
  t.is(blocked.code, 1);
  t.false(existsSync(`${other}.key`));
  t.is(await readFile(`${other}.pub`, 'utf8'), 'somebody else\n');
});

test('sign prints an ed25519 signature over "modelferry-v2:<name>:<version>:<sha256>:<size>:<seq>" that node:crypto verifies, --seq or the time in milliseconds', async (t) => {
  const { keyFile, publicKey } = await writeKeyPair(await tempDir(t), 'k');
  const result = await runCli(['sign', ADD, '--name', 'kws', '--version', '2026.11.24-3', '--key', keyFile, '--seq', '9007199254740993']);
  t.is(result.code, 0, result.stderr);
  const out = JSON.parse(result.stdout);
  t.like(out, { name: 'kws', version: '2026.11.24-3', sha256: ADD_SHA256, size: 1072, signatureSeq: '9007199254740993' });

  const raw = Buffer.from(publicKey, 'base64');
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
  const signature = Buffer.from(out.signature, 'base64');
  t.is(signature.length, 64);
  const message = Buffer.from(`modelferry-v2:kws:2026.11.24-3:${ADD_SHA256}:1072:9007199254740993`, 'utf8');
  t.true(verify(null, message, key, signature));
  t.false(verify(null, Buffer.from(`modelferry-v2:kws:2026.11.24-3:${ADD_SHA256}:1072:9007199254740992`, 'utf8'), key, signature));
  t.is(out.keyId, createHash('sha256').update(raw).digest('hex').slice(0, 16));

  const before = Date.now();
  const timed = JSON.parse((await runCli(['sign', ADD, '--name', 'kws', '--version', '2026.11.24-3', '--key', keyFile])).stdout);
  t.true(Number(timed.signatureSeq) >= before && Number(timed.signatureSeq) <= Date.now(), `${timed.signatureSeq} is the time in milliseconds`);
  t.true(verify(null, Buffer.from(`modelferry-v2:kws:2026.11.24-3:${ADD_SHA256}:1072:${timed.signatureSeq}`, 'utf8'), key, Buffer.from(timed.signature, 'base64')));
});

test('push --sign-key signs v2 (the time in milliseconds, or --seq) and is accepted by a gateway that requires signatures; an unsigned push fails with signature_required', async (t) => {
  const { keyFile, publicKey, privateKeyPem } = await writeKeyPair(await tempDir(t), 'signer');
  const strict = await startDaemon(t, { config: { trust: { keys: [{ publicKey }], requireSignatures: true } } });
  const args = ['--gateway', strict.url, '--token', ALL_TOKEN];

  const before = Date.now();
  const signed = await runCli(['push', ADD, '--name', 'signed', '--version', '1', '--sign-key', keyFile, '--assign', 'default', ...args]);
  t.is(signed.code, 0, signed.stderr);
  const record = await json(await strict.fetch('/v1/models/signed/1', { token: ADMIN_TOKEN }));
  t.true(Number(record.signatureSeq) >= before && Number(record.signatureSeq) <= Date.now(), `sequence ${record.signatureSeq} is the time in milliseconds`);
  t.regex(signed.stdout, new RegExp(`^stored signed@1 \\(sha256 ${ADD_SHA256}, 1072 bytes, signature sequence ${record.signatureSeq}\\)$`, 'm'));
  // ed25519 signatures are deterministic: this is the one the CLI must have sent.
  const expected = {
    signature: sign(null, Buffer.from(`modelferry-v2:signed:1:${ADD_SHA256}:1072:${record.signatureSeq}`), privateKeyPem).toString('base64'),
    keyId: createHash('sha256').update(Buffer.from(publicKey, 'base64')).digest('hex').slice(0, 16),
    signatureSeq: record.signatureSeq,
  };
  t.like(record, expected);
  // Passed through to devices.
  const answer = await json(await strict.fetch('/v1/devices/02:00:00:00:04:01/model'));
  t.like(answer.model, expected);

  const chosen = await runCli(['push', MUL, '--name', 'signed', '--version', '2', '--sign-key', keyFile, '--seq', '18446744073709551615', ...args]);
  t.is(chosen.code, 0, chosen.stderr);
  t.like(await json(await strict.fetch('/v1/models/signed/2', { token: ADMIN_TOKEN })), {
    signatureSeq: '18446744073709551615',
    signature: sign(null, Buffer.from(`modelferry-v2:signed:2:${MUL_SHA256}:1032:18446744073709551615`), privateKeyPem).toString('base64'),
  });
  for (const bad of ['18446744073709551616', '042', 'soon']) {
    const refused = await runCli(['push', MUL, '--name', 'signed', '--version', '3', '--sign-key', keyFile, '--seq', bad, ...args]);
    t.is(refused.code, 2, bad);
    t.regex(refused.stderr, new RegExp(`--seq takes a whole number from 0 to 18446744073709551615 without leading zeros, not "${bad}"`));
  }
  const seqAlone = await runCli(['push', MUL, '--name', 'signed', '--version', '3', '--seq', '5', ...args]);
  t.is(seqAlone.code, 2);
  t.regex(seqAlone.stderr, /--seq is the sequence of a signature: give it with --sign-key, or with --signature and --key-id/);
  t.is((await strict.fetch('/v1/models/signed/3', { token: ADMIN_TOKEN })).status, 404);

  const unsigned = await runCli(['push', MUL, '--name', 'unsigned', '--version', '1', ...args]);
  t.is(unsigned.code, 1);
  t.regex(unsigned.stderr, /signature_required/);
  t.is((await strict.fetch('/v1/models/unsigned', { token: ADMIN_TOKEN })).status, 404);
});

test('check exits 0 on a healthy cache and 1 after a blob is corrupted on disk, which is then no longer served', async (t) => {
  const own = await startDaemon(t);
  const args = ['--gateway', own.url, '--token', ALL_TOKEN];
  const program = makeProgram(256 * 1024);
  const digest = sha256(program);
  await pushHttp(own, 'checked', '1', program);
  await pushHttp(own, 'healthy', '1', fixture('add.pte'));
  const mac = '02:00:00:00:05:01';
  await assignHttp(own, mac, 'checked', '1');
  t.is((await own.fetch(`/v1/devices/${mac}/model`)).status, 200);

  const healthy = await runCli(['check', ...args]);
  t.is(healthy.code, 0, healthy.stderr);
  t.like(JSON.parse(healthy.stdout), { checked: 2, ok: 2, problems: 0 });

  // Same size, one byte different: only a full re-read can tell.
  const blob = path.join(own.state, 'blobs', digest);
  const bytes = await readFile(blob);
  bytes[100_000] = bytes[100_000]! ^ 0xff;
  await writeFile(blob, bytes);
  t.is((await own.fetch(`/v1/artifacts/${digest}`, { method: 'HEAD' })).status, 200, 'not detected before check');

  const corrupt = await runCli(['check', ...args]);
  t.is(corrupt.code, 1);
  const report = JSON.parse(corrupt.stdout);
  t.like(report, { checked: 2, ok: 1, problems: 1 });
  t.like(report.blobs.find((b: { sha256: string }) => b.sha256 === digest), { status: 'corrupt', models: ['checked@1'] });

  const served = await own.fetch(`/v1/artifacts/${digest}`);
  t.is(served.status, 404);
  t.is((await json(served)).error, 'artifact_not_found');
  t.is((await own.fetch(`/v1/artifacts/${ADD_SHA256}`)).status, 200);
  // Nor is the device pointed at it any more.
  const poll = await own.fetch(`/v1/devices/${mac}/model`);
  t.is(poll.status, 404);
  t.is((await json(poll)).error, 'no_assignment');
});

test('an unknown command exits 2 with the usage on stderr', async (t) => {
  const result = await runCli(['frobnicate']);
  t.is(result.code, 2);
  t.regex(result.stderr, /unknown command frobnicate/);
  t.regex(result.stderr, /usage: modelferry <command>/);
});

test('a missing required option or argument exits 2 with the command usage on stderr', async (t) => {
  const noName = await runCli(['push', ADD, '--version', '1', ...client()]);
  t.is(noName.code, 2);
  t.regex(noName.stderr, /--name is required/);
  t.regex(noName.stderr, /modelferry push FILE --name NAME --version VERSION/);

  const noVersion = await runCli(['assign', 'default', 'kws', ...client()]);
  t.is(noVersion.code, 2);
  t.regex(noVersion.stderr, /missing VERSION/);
  t.regex(noVersion.stderr, /modelferry assign SELECTOR NAME VERSION/);
});

test('an unreachable gateway makes a client command exit 1 with a message naming the URL', async (t) => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const result = await runCli(['push', ADD, '--name', 'kws', '--version', '9', '--gateway', url, '--token', ALL_TOKEN]);
  t.is(result.code, 1);
  t.regex(result.stderr, new RegExp(`cannot reach the gateway at ${url.replace(/\./g, '\\.')}: nothing listens there`));
  t.notRegex(result.stderr, /^\s+at /m, 'no stack trace');
});

test('push waits out a gateway busy with other pushes (503 busy, Retry-After) and tries again', async (t) => {
  const own = await startDaemon(t, { config: { artifacts: { maxConcurrentPushes: 1 } } });
  const refusedBusy = async () => {
    const text = await (await own.fetch('/metrics')).text();
    const count = /^modelferry_http_requests_total\{[^}]*method="PUT"[^}]*status="503"[^}]*\} (\d+)$/m.exec(text)?.[1];
    return Number(count ?? 0) > 0 ? true : undefined;
  };
  // Another pipeline's push holds the only slot: the rest of its body comes only once the
  // gateway has refused the CLI's first try, however long the CLI takes to start.
  const other = makeProgram(64 * 1024);
  let refused: () => void = () => {};
  const cliRefused = new Promise<void>((resolve) => { refused = resolve; });
  const slow = new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(other.subarray(0, 8 * 1024));
      await cliRefused;
      controller.enqueue(other.subarray(8 * 1024));
      controller.close();
    },
  });
  const held = own.fetch('/v1/models/other/1', {
    method: 'PUT', body: slow, token: ALL_TOKEN, headers: { 'Content-Length': String(other.length) }, duplex: 'half',
  } as RequestInit & { token: string });

  const cli = runCli(['push', ADD, '--name', 'kws', '--version', '9.0', '--gateway', own.url, '--token', ALL_TOKEN]);
  await until('the CLI\'s first push refused as busy', refusedBusy, 60_000);
  refused();
  t.is((await held).status, 201);
  const result = await cli;
  t.is(result.code, 0, result.stderr);
  t.regex(result.stderr, /the gateway is busy with other pushes; trying again in 5 s \(1 of 5\)/);
  t.regex(result.stdout, /stored kws@9\.0/);
  t.is((await own.fetch('/v1/models/kws/9.0', { token: ALL_TOKEN })).status, 200);
});
