import http from 'node:http';
import { readFile } from 'node:fs/promises';

// The floor under the gateway's HTTP figures: a bare node:http server, with the gateway's
// node flags, answering the same bytes with the same headers and nothing else (no routing,
// auth, metrics, registry or timeouts). The gateway cannot be faster than this; the gap
// between the two is the gateway's own cost, and the gap between this and nginx is the
// runtime's. Run as its own process: node bench/node-floor.ts PORT POLL_FILE ETAG BLOB_FILE

const [port, pollFile, etag, blobFile] = process.argv.slice(2) as [string, string, string, string];
const poll = await readFile(pollFile);
const blob = await readFile(blobFile);
const pollHeaders = { ETag: etag, 'Cache-Control': 'no-cache', 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': poll.length };

http.createServer((req, res) => {
  if (req.url === '/poll.json') {
    if (req.headers['if-none-match'] === etag) res.writeHead(304, { ETag: etag, 'Cache-Control': 'no-cache' }).end();
    else res.writeHead(200, pollHeaders).end(poll);
    return;
  }
  const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
  if (!range) {
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': blob.length }).end(blob);
    return;
  }
  const start = Number(range[1]);
  const end = Number(range[2]);
  res.writeHead(206, { 'Content-Type': 'application/octet-stream', 'Content-Range': `bytes ${start}-${end}/${blob.length}`, 'Content-Length': end - start + 1 });
  res.end(blob.subarray(start, end + 1));
}).listen(Number(port), '127.0.0.1');
