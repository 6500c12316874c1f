import type { Args } from './args.ts';

/** A refusal from the gateway, or no answer at all, as a sentence for the person at the terminal. */
export class ClientError extends Error {
  readonly code: string;
  readonly status: number;

  constructor(code: string, status: number, message: string) {
    super(message);
    this.name = 'ClientError';
    this.code = code;
    this.status = status;
  }
}

export interface RequestOptions {
  body?: string | Buffer | ReadableStream;
  json?: unknown;
  headers?: Record<string, string>;
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
    const url = args.options.get('gateway') ?? env.MODELFERRY_GATEWAY ?? 'http://localhost:8080';
    return new GatewayClient(url, args.options.get('token') ?? env.MODELFERRY_TOKEN);
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
      throw new ClientError('unreachable', 0, `cannot reach the gateway at ${this.baseUrl}: ${cause?.code ?? cause?.message ?? (error as Error).message}`);
    }
    const text = await response.text();
    let parsed: unknown = text;
    if (response.headers.get('content-type')?.includes('json') && text) parsed = JSON.parse(text);
    if (!response.ok) {
      const { error, message } = (parsed ?? {}) as { error?: string; message?: string };
      throw new ClientError(error ?? 'http_error', response.status, `${response.status} ${error ?? response.statusText}: ${message ?? text}`);
    }
    return { status: response.status, body: parsed as T };
  }
}
