import type { Context } from 'koa';
import type { z } from 'zod';
import { fail } from '../errors.ts';

/**
 * Reads a JSON request body of at most `limit` bytes. Bigger bodies are refused as soon as
 * the limit is passed (or at once from Content-Length), so memory stays bounded.
 */
export async function readJson(ctx: Context, limit: number): Promise<unknown> {
  return (await readJsonSized(ctx, limit)).value;
}

/** readJson, also saying how many bytes the body had (for limits that depend on content). */
export async function readJsonSized(ctx: Context, limit: number): Promise<{ value: unknown; bytes: number }> {
  const type = ctx.get('Content-Type');
  // curl -d sends application/x-www-form-urlencoded unless told otherwise: taken as JSON,
  // since nothing here accepts forms and a one-line curl is how operators script this.
  if (type && !/^application\/(([\w.+-]+\+)?json|x-www-form-urlencoded)\b/i.test(type)) {
    fail('unsupported_media_type', `expected Content-Type: application/json, got ${type.split(';')[0]}`);
  }
  const declared = Number(ctx.get('Content-Length') || 0);
  if (declared > limit) tooLarge(ctx, limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) tooLarge(ctx, limit);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return { value: JSON.parse(text), bytes: size };
  } catch (error) {
    fail('invalid_json', `the body is not valid JSON: ${(error as Error).message}`);
  }
}

/** Reads and validates a JSON body; the message names the first field that is wrong. */
export async function readJsonAs<S extends z.ZodType>(ctx: Context, limit: number, schema: S): Promise<z.infer<S>> {
  return validate(schema, await readJson(ctx, limit));
}

/** `400 invalid_body` naming the first field that is wrong, or the parsed value. */
export function validate<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = issue.path.length > 0 ? issue.path.join('.') : 'body';
    if (issue.code === 'unrecognized_keys') {
      fail('invalid_body', `${field}: unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`);
    }
    fail('invalid_body', `${field}: ${issue.message}`);
  }
  return result.data;
}

/** Stops reading, lets the rest of the body drain unread and closes the connection after. */
export function tooLarge(ctx: Context, limit: number): never {
  ctx.set('Connection', 'close');
  ctx.req.resume();
  fail('body_too_large', `the body is larger than the ${limit} bytes this route takes`);
}
