import { createHash, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import type { Config, Scope } from '../config/schema.ts';
import { fail } from '../errors.ts';

const CHALLENGE = { 'WWW-Authenticate': 'Bearer realm="modelferry"' };

interface Credential {
  name: string;
  scopes: readonly Scope[];
  digest: Buffer;
}

const digestOf = (secret: string) => createHash('sha256').update(secret).digest();

/**
 * Bearer tokens. Secrets are compared as sha256 digests with timingSafeEqual, against every
 * configured token without stopping early, so timing tells nothing about which one is close.
 */
export class TokenAuth {
  readonly #credentials: Credential[];
  readonly #deviceToken: Buffer | null;

  constructor(auth: Config['auth'], devices: Config['devices']) {
    this.#credentials = auth.tokens.map(({ name, token, scopes }) => ({ name, scopes, digest: digestOf(token) }));
    this.#deviceToken = devices.token === null ? null : digestOf(devices.token);
  }

  /** The configured token presented in this Authorization header, if any. */
  identify(header: string | undefined): Credential | undefined {
    const presented = bearerOf(header);
    if (presented === undefined) return undefined;
    const digest = digestOf(presented);
    let found: Credential | undefined;
    for (const credential of this.#credentials) {
      if (timingSafeEqual(credential.digest, digest) && !found) found = credential;
    }
    return found;
  }

  /** Admin and pipeline routes: GET takes any token, writes need `scope`. */
  require(scope: Scope, options: { evenForReads?: boolean } = {}): Middleware {
    return async (ctx, next) => {
      const credential = this.identify(ctx.get('Authorization'));
      if (!credential) {
        if (this.#credentials.length === 0) {
          fail('unauthorized', 'this gateway has no tokens configured (auth.tokens is empty), so its admin API refuses everyone: add {name, token, scopes} entries under auth.tokens in its config file and restart it', CHALLENGE);
        }
        fail('unauthorized', ctx.get('Authorization') ? 'the bearer token is not valid for this gateway' : 'this route needs Authorization: Bearer <token>', CHALLENGE);
      }
      const reading = ctx.method === 'GET' || ctx.method === 'HEAD';
      if ((!reading || options.evenForReads) && !credential.scopes.includes(scope)) {
        fail('forbidden', `token "${credential.name}" lacks the ${scope} scope`);
      }
      ctx.state.client = credential.name;
      await next();
    };
  }

  /**
   * Device routes: open unless devices.token is set. Any configured admin token is accepted
   * too, so that a downstream gateway can fetch artifacts with its sync token.
   */
  devices(): Middleware {
    return async (ctx, next) => {
      if (!this.admitsDevice(ctx.get('Authorization'))) {
        fail('unauthorized', 'this gateway requires devices to send Authorization: Bearer <devices.token>', CHALLENGE);
      }
      await next();
    };
  }

  admitsDevice(header: string | undefined): boolean {
    if (this.#deviceToken === null) return true;
    const presented = bearerOf(header);
    return presented !== undefined
      && (timingSafeEqual(digestOf(presented), this.#deviceToken) || this.identify(header) !== undefined);
  }
}

function bearerOf(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}
