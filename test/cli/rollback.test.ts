import { runCli, startDaemon, type RunningDaemon } from '../helpers/daemon-process.ts';
import { Teardowns, tempDir } from '../helpers/harness.ts';
import { ADD_SHA256, fixture, fixturePath, MUL_SHA256 } from '../helpers/programs.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { ADMIN_TOKEN, ALL_TOKEN, TEST_TOKENS } from '../helpers/tokens.ts';
import { opensslKey, opensslSign, opensslVerifies, type OpensslKey } from '../signing/openssl-ed25519.ts';

// `modelferry assign` warning of devices that will refuse an older signed model, and
// `modelferry rollback` putting them back on its bytes under a higher sequence: the real CLI
// against a real gateway that verifies every signature (two trusted keys) and serves devices
// with a shared token. Signatures are made and checked by openssl.

const test = testNeeding('openssl');

const shared = new Teardowns();
test.after.always(() => shared.run());

const DEVICE_TOKEN = 'test-device-token-0123456789';
/** An operator token without the sync scope: the gateway gives it no model bytes. */
const OPS_TOKEN = 'test-ops-token-0123456789';

interface Setup {
  gw: RunningDaemon;
  pipeline: OpensslKey;
  other: OpensslKey;
}

let setup: Promise<Setup> | undefined;
function started(): Promise<Setup> {
  setup ??= (async () => {
    const dir = await tempDir(shared);
    const pipeline = await opensslKey(dir, 'pipeline');
    const other = await opensslKey(dir, 'other');
    const gw = await startDaemon(shared, {
      config: {
        trust: { keys: [{ publicKey: pipeline.publicKey }, { publicKey: other.publicKey }] },
        devices: { token: DEVICE_TOKEN },
        auth: { tokens: [...TEST_TOKENS, { name: 'ops', token: OPS_TOKEN, scopes: ['push', 'admin'] }] },
      },
    });
    return { gw, pipeline, other };
  })();
  return setup;
}

const client = (gw: RunningDaemon, token = ALL_TOKEN) => ['--gateway', gw.url, '--token', token];
const json = async (response: Response): Promise<any> => response.json();

/** Setup that is not the subject of a test goes straight to the HTTP API, signed by openssl. */
async function pushSigned(gw: RunningDaemon, key: OpensslKey | null, name: string, version: string, file: 'add.pte' | 'mul.pte', seq?: string): Promise<void> {
  const bytes = fixture(file);
  const headers: Record<string, string> = {};
  if (key) {
    const sha = file === 'add.pte' ? ADD_SHA256 : MUL_SHA256;
    const message = `modelferry-${seq === undefined ? 'v1' : 'v2'}:${name}:${version}:${sha}:${bytes.length}${seq === undefined ? '' : `:${seq}`}`;
    headers['X-Signature'] = await opensslSign(key, message);
    headers['X-Signature-Key-Id'] = key.keyId;
    if (seq !== undefined) headers['X-Signature-Seq'] = seq;
  }
  const response = await gw.fetch(`/v1/models/${name}/${version}`, { method: 'PUT', body: bytes, token: ALL_TOKEN, headers });
  if (response.status !== 201) throw new Error(`push ${name}@${version}: ${response.status} ${await response.text()}`);
}

async function assignHttp(gw: RunningDaemon, selector: string, model: string, version: string): Promise<void> {
  const response = await gw.fetch(`/v1/assignments/${selector}`, { method: 'PUT', token: ALL_TOKEN, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model, version }) });
  if (response.status >= 300) throw new Error(`assign ${selector}: ${response.status} ${await response.text()}`);
}

async function deviceRuns(gw: RunningDaemon, mac: string, model: string, version: string, sha256: string): Promise<void> {
  const response = await gw.fetch(`/v1/devices/${mac}/report`, {
    method: 'POST', token: DEVICE_TOKEN, headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ state: 'installed', model, version, sha256 }),
  });
  if (response.status !== 204) throw new Error(`report of ${mac}: ${response.status} ${await response.text()}`);
}

test('assign warns on stderr of devices that will refuse an older signed model, and rollback puts them back on its bytes under a higher sequence, where the model was assigned', async (t) => {
  const { gw, pipeline } = await started();
  const mac = '02:00:00:00:41:01';
  await pushSigned(gw, pipeline, 'kws', '1.0', 'mul.pte', '100');
  await pushSigned(gw, pipeline, 'kws', '2.0', 'add.pte', '200');
  await assignHttp(gw, mac, 'kws', '2.0');
  await assignHttp(gw, 'group:lab', 'kws', 'latest');
  await deviceRuns(gw, mac, 'kws', '2.0', ADD_SHA256);

  const back = await runCli(['assign', mac, 'kws', '1.0', ...client(gw)]);
  t.is(back.code, 0, back.stderr);
  t.is(back.stderr, `warning: 1 device under ${mac} runs kws signed with sequence 200 > 100 (kws@1.0) and will refuse it as a rollback; `
    + 'publish its bytes again under a higher sequence with `modelferry rollback kws --to 1.0 --sign-key KEY`\n');

  const before = Date.now();
  const rolled = await runCli(['rollback', 'kws', '--to', '1.0', '--sign-key', pipeline.keyFile, ...client(gw)]);
  t.is(rolled.code, 0, rolled.stderr);
  t.is(rolled.stderr, '', 'no device refuses the new version');
  const { versions } = await json(await gw.fetch('/v1/models/kws', { token: ADMIN_TOKEN }));
  const made = versions.find((v: { version: string }) => v.version.startsWith('1.0-rollback-'));
  t.truthy(made, JSON.stringify(versions));
  const seq = made.version.slice('1.0-rollback-'.length);
  t.is(made.signatureSeq, seq);
  t.true(Number(seq) >= before && Number(seq) <= Date.now(), 'the time in milliseconds');
  t.like(made, { sha256: MUL_SHA256, size: 1032, keyId: pipeline.keyId });
  t.true(await opensslVerifies(pipeline, `modelferry-v2:kws:${made.version}:${MUL_SHA256}:1032:${seq}`, made.signature));
  t.deepEqual(rolled.stdout.split('\n'), [
    `verified kws@1.0 (sha256 ${MUL_SHA256}, 1032 bytes, signed by key ${pipeline.keyId} with sequence 100)`,
    `stored kws@${made.version} (sha256 ${MUL_SHA256}, 1032 bytes, signature sequence ${seq})`,
    `group:lab follows kws@latest, which is kws@${made.version} now`,
    `assigned kws@${made.version} to ${mac}`,
    '',
  ]);

  // The device is offered the old bytes under the new version and sequence.
  const answer = await json(await gw.fetch(`/v1/devices/${mac}/model`, { token: DEVICE_TOKEN }));
  t.like(answer.model, { name: 'kws', version: made.version, sha256: MUL_SHA256, signatureSeq: seq, signature: made.signature });

  // Again with a sequence that is not above what devices may have accepted: refused, nothing stored.
  const stale = await runCli(['rollback', 'kws', '--to', '2.0', '--seq', '200', '--sign-key', pipeline.keyFile, ...client(gw)]);
  t.is(stale.code, 1);
  t.regex(stale.stderr, new RegExp(`--seq 200 is not above the highest signature sequence of kws here \\(${seq}, kws@${made.version.replace(/\./g, '\\.')}\\)`));
  t.is((await json(await gw.fetch('/v1/models/kws', { token: ADMIN_TOKEN }))).versions.length, 3);
});

test('rollback signs again only bytes whose signature it can check: an unsigned version, or one signed by another key, is refused unless --verify-key gives it', async (t) => {
  const { gw, pipeline, other } = await started();
  await pushSigned(gw, null, 'vad', '1', 'add.pte');
  await pushSigned(gw, other, 'vad', '2', 'mul.pte', '50');

  const unsigned = await runCli(['rollback', 'vad', '--to', '1', '--sign-key', pipeline.keyFile, ...client(gw)]);
  t.is(unsigned.code, 1);
  t.regex(unsigned.stderr, /vad@1 is not signed, so nothing shows its bytes are the pipeline's: push the \.pte from your build again with modelferry push --sign-key/);

  const foreign = await runCli(['rollback', 'vad', '--to', '2', '--sign-key', pipeline.keyFile, ...client(gw)]);
  t.is(foreign.code, 1);
  t.regex(foreign.stderr, new RegExp(`vad@2 is signed by key ${other.keyId}, which is neither --sign-key's \\(${pipeline.keyId}\\) nor a --verify-key: give its public key with --verify-key FILE`));
  t.deepEqual((await json(await gw.fetch('/v1/models/vad', { token: ADMIN_TOKEN }))).versions.map((v: { version: string }) => v.version).sort(), ['1', '2'], 'nothing stored');

  const given = await runCli(['rollback', 'vad', '--to', '2', '--version', '2-again', '--seq', '51', '--assign', '02:00:00:00:41:02',
    '--sign-key', pipeline.keyFile, '--verify-key', other.publicKeyFile, ...client(gw)]);
  t.is(given.code, 0, given.stderr);
  t.regex(given.stdout, new RegExp(`^verified vad@2 \\(sha256 ${MUL_SHA256}, 1032 bytes, signed by key ${other.keyId} with sequence 50\\)$`, 'm'));
  t.regex(given.stdout, /^assigned vad@2-again to 02:00:00:00:41:02$/m);
  t.like(await json(await gw.fetch('/v1/models/vad/2-again', { token: ADMIN_TOKEN })), { sha256: MUL_SHA256, signatureSeq: '51', keyId: pipeline.keyId });
});

test('a token the gateway gives no model bytes to is told to use a sync token or --file; --file must hold the old version\'s bytes', async (t) => {
  const { gw, pipeline } = await started();
  await pushSigned(gw, pipeline, 'asr', '1', 'add.pte', '10');
  await pushSigned(gw, pipeline, 'asr', '2', 'mul.pte', '20');

  const noBytes = await runCli(['rollback', 'asr', '--to', '1', '--sign-key', pipeline.keyFile, ...client(gw, OPS_TOKEN)]);
  t.is(noBytes.code, 1);
  t.regex(noBytes.stderr, /the gateway does not give model bytes to this token \(401 unauthorized: .*\): use a token with the sync scope, or give the old \.pte with --file/);

  const wrongFile = await runCli(['rollback', 'asr', '--to', '1', '--file', fixturePath('mul.pte'), '--sign-key', pipeline.keyFile, ...client(gw, OPS_TOKEN)]);
  t.is(wrongFile.code, 1);
  t.regex(wrongFile.stderr, new RegExp(`--file .*mul\\.pte is not asr@1: its sha256 is ${MUL_SHA256} \\(1032 bytes\\), the version's is ${ADD_SHA256} \\(1072 bytes\\)`));
  t.is((await json(await gw.fetch('/v1/models/asr', { token: ADMIN_TOKEN }))).versions.length, 2, 'nothing stored');

  const fromFile = await runCli(['rollback', 'asr', '--to', '1', '--file', fixturePath('add.pte'), '--seq', '21', '--sign-key', pipeline.keyFile, ...client(gw, OPS_TOKEN)]);
  t.is(fromFile.code, 0, fromFile.stderr);
  t.regex(fromFile.stdout, /^stored asr@1-rollback-21 \(sha256 [0-9a-f]{64}, 1072 bytes, signature sequence 21\)$/m);
  t.regex(fromFile.stdout, /^no assignment names asr: assign asr@1-rollback-21 where it should run \(modelferry assign SELECTOR asr 1-rollback-21\)$/m);
});
