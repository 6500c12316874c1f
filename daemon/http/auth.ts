import { createHash, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import { bearerOf, type DeviceAdmission } from '../identity/device-admission.ts';
import type { Config, Scope } from '../config/schema.ts';
import { isMac, parseMac } from '../contract/identifiers.ts';
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
  /** Device identity (pinned and accepted admission); none: devices are never asked for keys. */
  #admission: DeviceAdmission | undefined;

  constructor(auth: Config['auth'], devices: Pick<Config['devices'], 'token'>, admission?: DeviceAdmission) {
    this.#credentials = auth.tokens.map(({ name, token, scopes }) => ({ name, scopes, digest: digestOf(token) }));
    this.#deviceToken = devices.token === null ? null : digestOf(devices.token);
    this.#admission = admission;
  }
  /**
   * New tokens from a config reload: the next request is checked against them. Requests
   * already admitted (a held long poll, a download) are not checked again.
   */
  update(auth: Config['auth'], devices: Config['devices']): void {
    const next = new TokenAuth(auth, devices, this.#admission);
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

  /** Reads of the admin API (docs/design.md "Tokens and scopes"): any configured token, any scopes. */
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
   * The routes of one device (its poll and its report): device credentials only, for that
   * MAC. Pipeline and admin tokens are refused here: they are not a device.
   */
  deviceAccess(): Middleware {
    return async (ctx, next) => {
      if (!this.admitsDevice(ctx.get('Authorization'), ctx.params?.mac === undefined ? undefined : normalMac(ctx.params.mac))) this.#refuseDevice();
      await next();
    };
  }

  /**
   * Artifacts: what device credentials admit (any device's), and also a token with the sync
   * scope, so that a downstream gateway can fetch what this one's manifest names.
   */
  artifactAccess(): Middleware {
    return async (ctx, next) => {
      if (!this.admitsArtifactReader(ctx.get('Authorization'))) this.#refuseDevice();
      await next();
    };
  }

  /**
   * Under open admission: anyone, or with devices.token set, who sends it. Under pinned and
   * accepted: a live device token issued to `mac` (to any device when `mac` is undefined).
   */
  admitsDevice(header: string | undefined, mac: string | undefined): boolean {
    const admission = this.#admission;
    if (admission && admission.policy !== 'open') return admission.admits(header, mac);
    if (this.#deviceToken === null) return true;
    const presented = bearerOf(header);
    return (presented !== undefined && timingSafeEqual(digestOf(presented), this.#deviceToken)) || (admission?.admits(header, mac) ?? false);
  }

  admitsArtifactReader(header: string | undefined): boolean {
    return this.admitsDevice(header, undefined) || (this.identify(header)?.scopes.includes('sync') ?? false);
  }

  #refuseDevice(): never {
    if (this.#admission && this.#admission.policy !== 'open') {
      fail('unauthorized', 'this gateway admits devices by key: get a device token (POST /v1/devices/{mac}/challenge, then /token) and send Authorization: Bearer <device token>', CHALLENGE);
    }
    fail('unauthorized', 'this gateway requires devices to send Authorization: Bearer <devices.token>', CHALLENGE);
  }
}

/** The canonical form of a MAC route parameter (any accepted form), or undefined if it is not one. */
function normalMac(param: string): string | undefined {
  return isMac(param) ? parseMac(param) : undefined;
}
