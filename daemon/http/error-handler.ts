import type { Middleware } from 'koa';
import { errorCatalogue, isModelferryError, type ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import { diskFullError } from '../store/disk-space.ts';
import { applyPrepared, preparedError } from './prepared-response.ts';

const STATUS_CODES = new Map<number, ErrorCode>([
  [404, 'not_found'],
  [405, 'method_not_allowed'],
  [413, 'body_too_large'],
  [501, 'method_not_allowed'],
]);

/**
 * Turns every failure into `{"error": code, "message": sentence}` with the catalogue's
 * status. Anything that is not a ModelferryError is a bug: it is logged with its stack
 * and answered as `internal`, without details.
 */
export function errorHandler(log: Logger): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        ctx.status = 404;
        ctx.body = { error: 'not_found', message: describe('not_found', ctx.method, ctx.path) };
      }
    } catch (error) {
      if (isModelferryError(error)) {
        applyPrepared(ctx, preparedError(error));
        return;
      }
      const status = (error as { status?: number }).status;
      const code = status === undefined ? undefined : STATUS_CODES.get(status);
      if (code) {
        ctx.status = errorCatalogue[code].status;
        ctx.body = { error: code, message: describe(code, ctx.method, ctx.path) };
        return;
      }
      if ((error as NodeJS.ErrnoException).code === 'ECONNRESET' || (error as Error).message === 'aborted') {
        log.warn({ method: ctx.method, path: ctx.path }, 'client went away mid-request');
        return;
      }
      // A full disk is the operator's to fix, not a bug: say so to the client as well.
      const full = diskFullError(error, `${ctx.method} ${ctx.path} was writing`);
      if (full) {
        log.warn({ err: error, method: ctx.method, path: ctx.path }, 'disk full');
        applyPrepared(ctx, preparedError(full));
        return;
      }
      log.error({ err: error, method: ctx.method, path: ctx.path }, 'request failed');
      ctx.status = 500;
      ctx.body = { error: 'internal', message: errorCatalogue.internal.message };
    }
  };
}

function describe(code: ErrorCode, method: string, path: string): string {
  if (code === 'method_not_allowed') return `${method} is not allowed on ${path}`;
  if (code === 'not_found') return `no route for ${method} ${path}`;
  return errorCatalogue[code].message;
}
