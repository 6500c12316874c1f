// Fuzzing every route of a running gateway with fast-check: random methods, paths, MACs,
// digests, names, queries, headers, ranges and bodies (JSON of any shape, JSON shaped like
// the real documents, raw bytes). For every request: never a 5xx, the daemon stays up, and
// a refused request (4xx) changes nothing stored (catalog revision, model list, device count).
//
//   node --import tsx test/scripts/fuzz.ts --url http://127.0.0.1:8080 --runs 100000
//
// test/daemon/fuzz.test.ts runs a short version against a daemon of its own. The gateway must
// be configured with the test tokens (test/helpers/tokens.ts) for writes to get through.
import http from 'node:http';
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { ADMIN_TOKEN, ALL_TOKEN, PUSH_TOKEN, SYNC_TOKEN } from '../helpers/tokens.ts';

export interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer | undefined;
}

const hex = (length: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: length, maxLength: length });
const junk = fc.string({ unit: fc.constantFrom(...'aZ09-_.:~%/?#&=+ \u00e9*"\'\\'), maxLength: 40 });
const segment = (valid: fc.Arbitrary<string>) => fc.oneof(valid, junk.map(encodeURIComponent), fc.constantFrom('', '..', '%2e%2e', '%00', 'latest'));
const mac = segment(fc.oneof(
  fc.tuple(hex(2), hex(2), hex(2), hex(2), hex(2), hex(2)).map((parts) => parts.join(':')),
  fc.tuple(hex(2), hex(2), hex(2), hex(2), hex(2), hex(2)).map((parts) => parts.join('-').toUpperCase()),
  hex(12),
  fc.constantFrom('02:00:00:00:00:01', '02:00:00:00:00:02'),
));
const digest = segment(fc.oneof(hex(64), hex(63), hex(65)));
const name = segment(fc.oneof(fc.constantFrom('kws', 'vad', 'fuzz'), fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,8}$/)));
const version = segment(fc.oneof(fc.constantFrom('1', '2', 'latest'), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,8}$/)));
const selector = segment(fc.oneof(fc.constant('default'), name.map((n) => `group:${n}`), mac));

const pathArb: fc.Arbitrary<string> = fc.oneof(
  mac.map((m) => `/v1/devices/${m}/model`),
  mac.map((m) => `/v1/devices/${m}/report`),
  digest.map((d) => `/v1/artifacts/${d}`),
  fc.constantFrom('/v1/models', '/v1/assignments', '/v1/groups', '/v1/devices', '/v1/manifest', '/v1/cache/check', '/v1/sync', '/healthz', '/metrics', '/', '/v1', '/v2/models'),
  name.map((n) => `/v1/models/${n}`),
  fc.tuple(name, version).map(([n, v]) => `/v1/models/${n}/${v}`),
  selector.map((s) => `/v1/assignments/${s}`),
  name.map((n) => `/v1/groups/${n}`),
  mac.map((m) => `/v1/devices/${m}`),
  junk.map((j) => `/${encodeURIComponent(j)}`),
);
const query = fc.oneof(
  fc.constant(''),
  fc.constantFrom('?wait=0', '?wait=1', '?wait=-1', '?wait=1.5', '?wait=999999999', '?wait=x', '?limit=2', '?limit=0', '?limit=100000', '?after=02:00:00:00:00:01', '?after=zz', '?strict=true', '?wait=1&wait=2'),
  junk.map((j) => `?${encodeURIComponent(j)}=${encodeURIComponent(j)}`),
);
const token = fc.constantFrom(undefined, ADMIN_TOKEN, PUSH_TOKEN, SYNC_TOKEN, ALL_TOKEN, 'not-a-token-0123456789', '');
const headerValue = fc.string({ unit: fc.constantFrom(...'abcXYZ019 -=,:;/"*\t'), maxLength: 60 });
const headersArb = fc.record({
  authorization: fc.oneof(token.map((t) => t === undefined ? undefined : `Bearer ${t}`), headerValue),
  'content-type': fc.constantFrom(undefined, 'application/json', 'application/octet-stream', 'text/plain', 'application/json; charset=utf-8', 'multipart/form-data; boundary=x'),
  'if-none-match': fc.oneof(fc.constant(undefined), fc.constant('*'), headerValue, hex(43).map((h) => `"${h}"`)),
  range: fc.oneof(fc.constant(undefined), fc.constantFrom('bytes=0-0', 'bytes=-1', 'bytes=5-', 'bytes=0-1,3-4', 'bytes=9999999-', 'bytes=-0', 'bytes=x'), headerValue),
  'if-range': fc.oneof(fc.constant(undefined), headerValue),
  'x-content-sha256': fc.oneof(fc.constant(undefined), hex(64), headerValue),
  'repr-digest': fc.oneof(fc.constant(undefined), fc.constantFrom('sha-256=:AAAA:', 'sha-256=:x:', 'sha-512=:AAAA:'), headerValue),
  'x-signature': fc.oneof(fc.constant(undefined), headerValue),
  'x-signature-key-id': fc.oneof(fc.constant(undefined), hex(16), headerValue),
}, { requiredKeys: [] });
const shapedJson = fc.oneof(
  fc.record({ model: fc.oneof(fc.constantFrom('kws', 'vad'), fc.string()), version: fc.oneof(fc.constantFrom('1', 'latest'), fc.string()), rollout: fc.option(fc.record({ percent: fc.double(), previous: fc.record({ model: fc.string(), version: fc.string() }) }, { requiredKeys: [] })) }, { requiredKeys: [] }),
  fc.record({ members: fc.array(fc.oneof(mac, fc.anything()), { maxLength: 5 }) }, { requiredKeys: [] }),
  fc.record({
    state: fc.oneof(fc.constantFrom('idle', 'downloading', 'verifying', 'installed', 'failed'), fc.anything()),
    sha256: fc.oneof(hex(64), fc.anything()),
    progress: fc.oneof(fc.double(), fc.anything()),
    capabilities: fc.oneof(fc.record({ operators: fc.array(fc.string(), { maxLength: 5 }), arenaBytes: fc.integer() }, { requiredKeys: [] }), fc.anything()),
  }, { requiredKeys: [] }),
);
const bodyArb = fc.oneof(
  fc.constant(undefined),
  fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
  shapedJson.map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
  fc.uint8Array({ maxLength: 2048 }).map((bytes) => Buffer.from(bytes)),
  fc.string({ maxLength: 200 }).map((text) => Buffer.from(text)),
);

export const requestArb: fc.Arbitrary<FuzzRequest> = fc.record({
  method: fc.oneof(fc.constantFrom('GET', 'GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS'), fc.stringMatching(/^[A-Z]{1,8}$/)),
  path: fc.tuple(pathArb, query).map(([p, q]) => p + q),
  headers: headersArb.map((h) => Object.fromEntries(Object.entries(h).filter(([, v]) => v !== undefined)) as Record<string, string>),
  body: bodyArb,
});

export interface Answer { status: number; body: string }

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

export function send(base: string, request: FuzzRequest, timeoutMs = 15_000): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: url.hostname, port: url.port, method: request.method, path: request.path, agent,
      headers: { ...request.headers, ...(request.body ? { 'content-length': String(request.body.length) } : {}) },
      timeout: timeoutMs,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8').slice(0, 500) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('no answer in time')));
    req.on('error', reject);
    req.end(request.body);
  });
}

/** What a refused request must leave as it was. */
async function fingerprint(base: string): Promise<string> {
  const health = JSON.parse((await send(base, { method: 'GET', path: '/healthz', headers: {}, body: undefined })).body) as { revision: string; devices: number; models: number };
  const models = await send(base, { method: 'GET', path: '/v1/models', headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, body: undefined });
  return JSON.stringify([health.revision, health.devices, health.models, models.body]);
}

/** Runs `runs` random requests one after another; throws with the shrunk counterexample on a failure. */
export async function fuzz(base: string, runs: number, seed?: number): Promise<{ requests: number; byStatus: Record<string, number> }> {
  const byStatus: Record<string, number> = {};
  let requests = 0;
  await fc.assert(fc.asyncProperty(requestArb, async (request) => {
    let before = await fingerprint(base);
    let answer: Answer;
    try {
      answer = await send(base, request);
    } catch (error) {
      // A closed connection is an answer the limits give (a 413 mid-body, an unread body);
      // the daemon must still be up.
      await fingerprint(base);
      byStatus.closed = (byStatus.closed ?? 0) + 1;
      requests++;
      return true;
    }
    requests++;
    byStatus[answer.status] = (byStatus[answer.status] ?? 0) + 1;
    if (answer.status >= 500) throw new Error(`${request.method} ${request.path} answered ${answer.status}: ${answer.body}`);
    if (answer.status >= 400) {
      const after = await fingerprint(base);
      if (after !== before) throw new Error(`${request.method} ${request.path} was refused (${answer.status}) but changed stored state`);
    }
    before = '';
    return true;
  }), { numRuns: runs, seed, endOnFailure: true });
  return { requests, byStatus };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { url: { type: 'string' }, runs: { type: 'string', default: '100000' }, seed: { type: 'string' } } });
  if (!values.url) throw new Error('--url is required');
  const started = Date.now();
  const result = await fuzz(values.url, Number(values.runs), values.seed === undefined ? undefined : Number(values.seed));
  console.log(JSON.stringify({ ...result, seconds: Math.round((Date.now() - started) / 1000) }));
  agent.destroy();
}
