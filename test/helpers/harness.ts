import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';

// What the in-process gateway (gateway.ts) and the child-process daemon (daemon-process.ts)
// helpers share. Imports nothing from daemon/.

/** What the helpers need of a test: somewhere to register clean-up (ava's t, or Teardowns). */
export interface HasTeardown {
  teardown(fn: () => unknown): void;
}

/**
 * Clean-up for what the tests of a file share (started in `test.before`, where ava has no
 * t.teardown): run it from `test.after.always`. Like ava, runs the last registered first.
 */
export class Teardowns implements HasTeardown {
  readonly #fns: Array<() => unknown> = [];

  teardown(fn: () => unknown): void {
    this.#fns.push(fn);
  }

  async run(): Promise<void> {
    while (this.#fns.length > 0) await this.#fns.pop()!();
  }
}

/**
 * A temporary folder removed in the test's teardown. Teardowns run last-registered first, so
 * whatever is registered after this (a gateway or a child process using the folder) is
 * stopped before the folder goes.
 */
export async function tempDir(t: HasTeardown, prefix = 'modelferry-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export type FetchInit = RequestInit & { token?: string };

/** fetch of `pathname` on `baseUrl`; `token` adds a bearer header. */
export function fetchWithToken(baseUrl: string, pathname: string, init: FetchInit = {}): Promise<Response> {
  const { token, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (token) headers.set('Authorization', `Bearer ${token}`);
  return fetch(`${baseUrl}${pathname}`, { ...rest, headers });
}

/** Polls `probe` until it gives a value; past `timeoutMs` fails naming `what` was awaited. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Stops a test's HTTP server: no new connections, the open ones cut (a store that went down). */
export async function stopServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
