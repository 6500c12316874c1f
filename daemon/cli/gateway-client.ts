import { UsageError, type Args } from './args.ts';

/** A refusal from the gateway, or no answer at all, as a sentence for the person at the terminal. */
export class ClientError extends Error {
  readonly code: string;
  readonly status: number;
  /** The gateway's Retry-After, in seconds, when it sent one (503 busy, 429). */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: string, status: number, message: string, retryAfterSeconds?: number) {
    super(message);
    this.name = 'ClientError';
    this.code = code;
    this.status = status;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export interface RequestOptions {
  body?: string | Buffer | ReadableStream;
  json?: unknown;
  headers?: Record<string, string>;
  /** The answer's body as bytes (a model), not as text or JSON. */
  bytes?: boolean;
}

/**
 * The CLI's only way to the gateway: HTTP, like any pipeline or script. The daemon owns its
 * database, so nothing here opens it.
 */
export class GatewayClient {
  readonly baseUrl: string;
  readonly #token: string | undefined;

  constructor(baseUrl: string, token: string | undefined) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.#token = token;
  }

  static fromArgs(args: Args, env: NodeJS.ProcessEnv = process.env): GatewayClient {
    const flag = args.options.get('gateway');
    const from = flag !== undefined ? '--gateway' : env.MODELFERRY_GATEWAY ? 'MODELFERRY_GATEWAY' : undefined;
    const url = gatewayUrl(flag ?? (env.MODELFERRY_GATEWAY || 'http://localhost:8080'), from);
    return new GatewayClient(url, args.options.get('token') ?? (env.MODELFERRY_TOKEN || undefined));
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<{ status: number; body: T }> {
    const headers: Record<string, string> = { ...options.headers };
    if (this.#token) headers.Authorization = `Bearer ${this.#token}`;
    let body = options.body;
    if (options.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(options.json);
    }
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, {
        method, headers, body,
        ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
      } as RequestInit);
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new ClientError('unreachable', 0, unreachable(this.baseUrl, cause?.code ?? cause?.message ?? (error as Error).message));
    }
    const received = Buffer.from(await response.arrayBuffer());
    const text = received.toString('utf8');
    let parsed: unknown = text;
    if (response.headers.get('content-type')?.includes('json') && text) parsed = JSON.parse(text);
    if (!response.ok) {
      const { error, message } = (parsed ?? {}) as { error?: string; message?: string };
      // The gateway cannot know whether the token was forgotten; the CLI can.
      const hint = response.status === 401 && !this.#token
        ? ' (no token was sent: pass --token TOKEN or set MODELFERRY_TOKEN)' : '';
      const retryAfter = Number(response.headers.get('retry-after') ?? Number.NaN);
      throw new ClientError(error ?? 'http_error', response.status, `${response.status} ${error ?? response.statusText}: ${message ?? text}${hint}`,
        Number.isInteger(retryAfter) && retryAfter >= 0 ? retryAfter : undefined);
    }
    return { status: response.status, body: (options.bytes ? received : parsed) as T };
  }
}

/**
 * The gateway's base URL as a person types it: `gw.lan:8080` means `http://gw.lan:8080`.
 * Anything that is not then an http(s) URL is a usage error naming where it came from.
 */
export function gatewayUrl(text: string, from: string | undefined): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new UsageError(`${from ?? 'the gateway URL'} ${JSON.stringify(text)} is not a URL; expected http://HOST:PORT, e.g. http://gw.site.lan:8080`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`${from ?? 'the gateway URL'} ${JSON.stringify(text)} uses ${url.protocol.slice(0, -1)}; the gateway speaks http:// or https://`);
  }
  if (url.search || url.hash) throw new UsageError(`${from ?? 'the gateway URL'} ${JSON.stringify(text)} must not have a query or fragment`);
  return url.href;
}

const UNTRUSTED_CERTIFICATE = 'its certificate is not trusted here: set NODE_EXTRA_CA_CERTS to a copy of the gateway\'s cert.pem (docs/security.md, "TLS and pinning")';

function unreachable(baseUrl: string, cause: string): string {
  const why: Record<string, string> = {
    ECONNREFUSED: 'nothing listens there (is modelferry serve running, on that port?)',
    ENOTFOUND: 'the host name does not resolve',
    EAI_AGAIN: 'the host name could not be resolved just now (DNS)',
    ETIMEDOUT: 'the connection timed out',
    EHOSTUNREACH: 'the host is unreachable',
    ECONNRESET: 'the connection was reset',
    DEPTH_ZERO_SELF_SIGNED_CERT: UNTRUSTED_CERTIFICATE,
    SELF_SIGNED_CERT_IN_CHAIN: UNTRUSTED_CERTIFICATE,
    UNABLE_TO_VERIFY_LEAF_SIGNATURE: UNTRUSTED_CERTIFICATE,
    ERR_TLS_CERT_ALTNAME_INVALID: 'the gateway\'s certificate is not for this host name: use the name it was made for (<hostname>.local or localhost)',
  };
  return `cannot reach the gateway at ${baseUrl}: ${why[cause] ?? cause}; set --gateway URL or MODELFERRY_GATEWAY`;
}
