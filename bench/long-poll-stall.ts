// The 10,000-waiter figure (docs/limits.md "Waking thousands of long polls") on its own (npm
// run bench measures it too): a gateway holds 10,000 long polls, a push wakes them all, and
// its event-loop delay over that is printed. Runs itself inside a private network namespace
// like bench/run.ts.
//
//   node --import tsx bench/long-poll-stall.ts            # builds dist/ first
//   BENCH_GATEWAY_ENTRY=... LONG_POLLS=2000 node --import tsx bench/long-poll-stall.ts

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { longPollWakeStall } from './long-polls.ts';
import { gatewayEntry, stopChild } from './servers.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NETNS_RUN = path.join(ROOT, 'scripts', 'netns-run');

if (process.env.NETNS_RUN_INSIDE !== '1') {
  const child = spawn(NETNS_RUN, [process.execPath, ...process.execArgv, fileURLToPath(import.meta.url)], { stdio: 'inherit' });
  child.on('exit', (code) => process.exit(code ?? 1));
} else {
  if (!process.env.BENCH_GATEWAY_ENTRY) await promisify(execFile)('npm', ['run', 'build'], { cwd: ROOT });
  const dir = await mkdtemp(path.join(os.tmpdir(), 'modelferry-stall-'));
  const children: ChildProcess[] = [];
  try {
    const measured = await longPollWakeStall(ROOT, gatewayEntry(ROOT), dir, children, Number(process.env.LONG_POLLS ?? 10_000));
    console.log(`${measured.name}: ${measured.value}`);
    console.log(JSON.stringify(measured.raw));
  } finally {
    for (const child of children) await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  }
}
