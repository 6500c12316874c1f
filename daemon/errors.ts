// Every error the gateway can answer with, by stable code. Clients and tests match on the
// code; the message is for a person and may change.
export const errorCatalogue = {
  invalid_mac: 400,
  invalid_digest: 400,
  invalid_name: 400,
  invalid_version: 400,
  invalid_selector: 400,
  invalid_query: 400,
  invalid_json: 400,
  invalid_body: 400,
  invalid_signature: 400,
  signature_required: 400,
  unknown_key: 400,
  digest_mismatch: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  no_assignment: 404,
  artifact_not_found: 404,
  model_not_found: 404,
  assignment_not_found: 404,
  group_not_found: 404,
  device_not_found: 404,
  method_not_allowed: 405,
  version_conflict: 409,
  in_use: 409,
  upstream_owned: 409,
  group_conflict: 409,
  no_upstream: 409,
  body_too_large: 413,
  unsupported_format: 415,
  unsupported_media_type: 415,
  range_not_satisfiable: 416,
  shutting_down: 503,
  sync_aborted: 503,
  upstream_unreachable: 502,
  upstream_error: 502,
  manifest_invalid: 502,
  artifact_invalid: 502,
  upstream_timeout: 504,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof errorCatalogue;

export class ModelferryError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = 'ModelferryError';
    this.code = code;
    this.status = errorCatalogue[code];
    this.headers = headers;
  }
}

export function fail(code: ErrorCode, message: string, headers?: Record<string, string>): never {
  throw new ModelferryError(code, message, headers);
}

export function isModelferryError(error: unknown): error is ModelferryError {
  return error instanceof ModelferryError;
}
