import type { ServerResponse } from 'node:http';
import type { Context } from 'koa';
import type { ModelferryError } from '../errors.ts';

/**
 * An answer decided before it is written: status, headers and body. The rules that decide
 * it are written once, and the same answer goes out through the fast path (straight onto
 * the socket) or through Koa (behind its middleware), so the two cannot drift apart.
 */
export interface PreparedResponse {
  status: number;
  headers: Readonly<Record<string, string | number>>;
  /** Null for answers without a body (304), or HEAD. */
  body: Buffer | null;
}

export function sendPrepared(res: ServerResponse, prepared: PreparedResponse): void {
  res.writeHead(prepared.status, prepared.headers);
  if (prepared.body) res.end(prepared.body);
  else res.end();
}

export function applyPrepared(ctx: Context, prepared: PreparedResponse): void {
  ctx.status = prepared.status;
  for (const [name, value] of Object.entries(prepared.headers)) ctx.set(name, String(value));
  if (prepared.body) ctx.body = prepared.body;
}

/** The JSON error answer every route gives: `{"error": code, "message": sentence}`. */
export function preparedError(error: ModelferryError): PreparedResponse {
  const body = Buffer.from(JSON.stringify({ error: error.code, message: error.message }));
  return {
    status: error.status,
    headers: { ...error.headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.length },
    body,
  };
}
