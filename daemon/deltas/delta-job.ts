import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { makeDelta } from './make-delta.ts';

// `node delta-job.js FROM TO OUT`: writes the delta that makes the file TO from the file FROM
// to OUT, fsynced, and prints one JSON line: the delta's size and sha256, the CPU time and the
// peak memory it took. It runs as a process of its own (run-delta-job.ts): computing a delta
// takes seconds of CPU and tens of MiB on a Pi, which must never hold up a poll, and the
// memory goes back to the system when it ends.

const [from, to, out] = process.argv.slice(2);
if (!from || !to || !out) {
  process.stderr.write('usage: delta-job FROM TO OUT\n');
  process.exit(2);
}
const delta = makeDelta(await readFile(from), await readFile(to));
const file = await open(out, 'wx', 0o644);
try {
  await file.writeFile(delta);
  await file.sync();
} finally {
  await file.close();
}
const cpu = process.cpuUsage();
process.stdout.write(`${JSON.stringify({
  size: delta.length,
  sha256: createHash('sha256').update(delta).digest('hex'),
  cpuMs: Math.round((cpu.user + cpu.system) / 1000),
  maxRssBytes: process.resourceUsage().maxRSS * 1024,
})}\n`);
