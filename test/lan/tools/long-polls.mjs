// Many devices on one host, each holding a long poll (docs/design.md "Device poll"):
//   node long-polls.mjs '{"url": "http://198.18.0.10:8080", "macs": [...], "wait": 60, "localAddresses": [...]}'
// Asks each device's assignment once (its ETag), then holds GET ...?wait=N with If-None-Match
// for all of them, one connection each, spread over the host's addresses. Prints JSON lines:
// {"event":"holding","count":n} once every request is sent, then {"event":"done","statuses":
// {...},"versions":{...},"first":ms,"last":ms} when every poll has been answered.
import http from 'node:http';

const { url, macs, wait, localAddresses } = JSON.parse(process.argv[2]);
const base = new URL(url);
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

function get(path, headers, localAddress) {
  return new Promise((resolve, reject) => {
    const request = http.request({
      host: base.hostname, port: base.port, path, headers, agent: false, localAddress,
    }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode, etag: response.headers.etag, body: Buffer.concat(chunks).toString(), at: Date.now() }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end();
  });
}

const etags = new Map();
for (let i = 0; i < macs.length; i += 50) {
  await Promise.all(macs.slice(i, i + 50).map(async (mac, j) => {
    const answer = await get(`/v1/devices/${mac}/model`, {}, localAddresses[(i + j) % localAddresses.length]);
    if (answer.status !== 200) throw new Error(`${mac}: ${answer.status} ${answer.body}`);
    etags.set(mac, answer.etag);
  }));
}

const polls = macs.map((mac, i) => get(`/v1/devices/${mac}/model?wait=${wait}`, { 'If-None-Match': etags.get(mac) }, localAddresses[i % localAddresses.length]));
print({ event: 'holding', count: polls.length });
const answers = await Promise.all(polls);
const statuses = {};
const versions = {};
for (const answer of answers) {
  statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
  const version = answer.status === 200 ? JSON.parse(answer.body).model.version : 'none';
  versions[version] = (versions[version] ?? 0) + 1;
}
const times = answers.map((answer) => answer.at);
print({ event: 'done', statuses, versions, first: Math.min(...times), last: Math.max(...times) });
