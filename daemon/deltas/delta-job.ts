import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { makeDelta, newShare } from './make-delta.ts';

// `node delta-job.js FROM TO OUT MAX_SHARE`: writes the delta that makes the file TO from
// the file FROM to OUT, fsynced, and prints one JSON line: the delta's size and sha256, the
// CPU time and the peak memory it took. When TO is clearly too new for a delta under
// MAX_SHARE to exist (newShare, halfway between MAX_SHARE and all of it), it writes nothing
// and prints `estimate` (the share found new) instead of size and sha256. It runs as a
// process of its own (run-delta-job.ts): making a delta takes seconds of CPU and tens of
// MiB on a Pi, which must never hold up a poll, and the memory goes back to the system when
// it ends.

const [from, to, out, maxShare] = process.argv.slice(2);
if (!from || !to || !out || !(Number(maxShare) > 0)) {
  process.stderr.write('usage: delta-job FROM TO OUT MAX_SHARE\n');
  process.exit(2);
}
const [source, target] = [await readFile(from), await readFile(to)];
const usage = () => {
  const cpu = process.cpuUsage();
  return { cpuMs: Math.round((cpu.user + cpu.system) / 1000), maxRssBytes: peakRssBytes() };
};
const estimate = newShare(source, target);
if (estimate >= (1 + Number(maxShare)) / 2) {
  process.stdout.write(`${JSON.stringify({ estimate, ...usage() })}\n`);
} else {
  const delta = makeDelta(source, target);
  const file = await open(out, 'wx', 0o644);
  try {
    await file.writeFile(delta);
    await file.sync();
  } finally {
    await file.close();
  }
  process.stdout.write(`${JSON.stringify({ size: delta.length, sha256: createHash('sha256').update(delta).digest('hex'), ...usage() })}\n`);
}

/**
 * This process's own peak memory. Linux keeps getrusage's maxrss across fork and exec, so
 * there it would report the gateway's size when it started the job; VmHWM belongs to the
 * memory of this program alone.
 */
function peakRssBytes(): number {
  try {
    const kib = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    if (kib !== undefined) return Number(kib) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}
