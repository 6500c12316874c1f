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
  #credentials: Credential[];
  #deviceToken: Buffer | null;

  constructor(auth: Config['auth'], devices: Pick<Config['devices'], 'token'>) {
    this.#credentials = auth.tokens.map(({ name, token, scopes }) => ({ name, scopes, digest: digestOf(token) }));
    this.#deviceToken = devices.token === null ? null : digestOf(devices.token);
  }
  /**
   * New tokens from a config reload: the next request is checked against them. Requests
   * already admitted (a held long poll, a download) are not checked again.
   */
  update(auth: Config['auth'], devices: Config['devices']): void {
    const next = new TokenAuth(auth, devices);
    this.#credentials = next.#credentials;
    this.#deviceToken = next.#deviceToken;
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

  /** Reads of the admin API (DESIGN.md section 3): any configured token, whatever its scopes. */
  anyToken(): Middleware {
    return this.#guard(null);
  }

  /**
   * Writes of the admin API, and the manifest: a configured token that has one of `accepted`
   * (assignment writes take `assign` or `admin`, so a pipeline can assign what it pushes
   * without being handed the rest of `admin`).
   */
  scope(...accepted: [Scope, ...Scope[]]): Middleware {
    return this.#guard(accepted);
  }

  #guard(accepted: readonly Scope[] | null): Middleware {
    return async (ctx, next) => {
      const credential = this.identify(ctx.get('Authorization'));
      if (!credential) {
        if (this.#credentials.length === 0) {
          fail('unauthorized', 'this gateway has no tokens configured (auth.tokens is empty), so its admin API refuses everyone: add {name, token, scopes} entries under auth.tokens in its config file and restart it', CHALLENGE);
        }
        fail('unauthorized', ctx.get('Authorization') ? 'the bearer token is not valid for this gateway' : 'this route needs Authorization: Bearer <token>', CHALLENGE);
      }
      if (accepted !== null && !accepted.some((scope) => credential.scopes.includes(scope))) {
        fail('forbidden', `token "${credential.name}" lacks the ${accepted.join(' or ')} scope`);
      }
      ctx.state.client = credential.name;
      await next();
    };
  }

  /**
   * Device routes: open unless devices.token is set. Any configured admin token is accepted
   * too, so that a downstream gateway can fetch artifacts with its sync token.
   */
  deviceAccess(): Middleware {
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
