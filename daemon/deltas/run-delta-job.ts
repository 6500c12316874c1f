import { spawn } from 'node:child_process';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';

/** What a delta job reports (delta-job.ts): the delta it wrote, or the share of the target it found new and wrote nothing. */
export type DeltaJobResult = ({ size: number; sha256: string } | { estimate: number }) & { cpuMs: number; maxRssBytes: number };

// From the sources (tests, `npm run bench`) the job is TypeScript and needs the loader the
// gateway itself runs under; compiled (dist/), it is plain JavaScript.
const FROM_SOURCES = import.meta.url.endsWith('.ts');
const JOB = fileURLToPath(new URL(FROM_SOURCES ? './delta-job.ts' : './delta-job.js', import.meta.url));

/**
 * The command line of a job (node first): the heap it may grow is bounded by what the two
 * blobs need (a delta takes about 16 times the model's size in V8's heap, measured in
 * bench/delta-cost.ts), so a job that goes astray stops instead of taking a Pi's memory.
 */
export function deltaJobCommand(from: string, to: string, out: string, inputBytes: number, maxShare: number): string[] {
  const heapMiB = 64 + 16 * Math.ceil(inputBytes / 2 ** 20);
  const loader = FROM_SOURCES ? ['--import', import.meta.resolve('tsx')] : [];
  return [process.execPath, ...loader, `--max-old-space-size=${heapMiB}`, '--max-semi-space-size=1', JOB, from, to, out, String(maxShare)];
}

/**
 * Runs one delta job at a low CPU priority (the gateway's requests come first) and resolves
 * with its report; rejects when it fails, or is still running after `timeoutMs` (then it is
 * killed), or `signal` aborts (the gateway stops).
 */
export function runDeltaJob(from: string, to: string, out: string, inputBytes: number, maxShare: number, timeoutMs: number, signal: AbortSignal): Promise<DeltaJobResult> {
  const [node, ...args] = deltaJobCommand(from, to, out, inputBytes, maxShare);
  return new Promise((resolve, reject) => {
    const child = spawn(node!, args, { stdio: ['ignore', 'pipe', 'pipe'], signal, timeout: timeoutMs, killSignal: 'SIGKILL' });
    try {
      setPriority(child.pid!, 10);
    } catch {
      // Already gone, or not allowed: it runs at the gateway's priority.
    }
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (text: string) => { stdout += text; });
    child.stderr!.setEncoding('utf8').on('data', (text: string) => { if (stderr.length < 4096) stderr += text; });
    child.once('error', reject);
    child.once('close', (code, killed) => {
      if (code === 0) {
        try {
          resolve(JSON.parse(stdout) as DeltaJobResult);
          return;
        } catch {
          // fall through: a job that printed something else failed
        }
      }
      const why = killed ? `killed (${killed}${signal.aborted ? ', the gateway stops' : `, past ${timeoutMs / 1000} s or out of memory`})` : `exit ${code}`;
      reject(new Error(`the delta job ended: ${why}${stderr ? `: ${stderr.trim().split('\n').at(-1)}` : ''}`));
    });
  });
}
