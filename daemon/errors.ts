// Every error the gateway can answer with, by stable code, with its HTTP status and a
// default message. Clients and tests match on the code; the message is for a person and may
// change (a call site usually gives a more precise one). test/errors.test.ts checks that
// every code here is thrown somewhere and listed in docs/http-api.md "Errors", so none is
// dead or hidden.
export const errorCatalogue = {
  invalid_mac: { status: 400, message: 'not a MAC address; expected six hex pairs such as aa:bb:cc:dd:ee:ff' },
  invalid_digest: { status: 400, message: 'not a sha256 digest; expected 64 lower-case hex characters' },
  invalid_name: { status: 400, message: 'not a valid name; expected [a-z0-9][a-z0-9._-], at most 64 characters' },
  invalid_version: { status: 400, message: 'not a valid version; expected [A-Za-z0-9][A-Za-z0-9._+-], at most 64 characters, not "latest"' },
  invalid_selector: { status: 400, message: 'not a selector; expected a MAC address, group:<name> or default' },
  invalid_query: { status: 400, message: 'a query parameter is not valid' },
  invalid_json: { status: 400, message: 'the body is not valid JSON' },
  invalid_body: { status: 400, message: 'the body does not have the expected fields' },
  invalid_signature: { status: 400, message: 'the signature is malformed or does not verify' },
  signature_required: { status: 400, message: 'this gateway requires signed models' },
  unknown_key: { status: 400, message: "the signature's key id is not among this gateway's trusted keys" },
  digest_mismatch: { status: 400, message: 'the body does not match the declared digest; nothing was stored' },
  unauthorized: { status: 401, message: 'this route needs a valid bearer token' },
  device_auth_failed: { status: 401, message: 'the device did not prove the key this gateway knows for its MAC' },
  forbidden: { status: 403, message: 'the token lacks the scope this route needs' },
  device_pending: { status: 403, message: 'this device waits for an operator to accept it' },
  device_rejected: { status: 403, message: 'this device was rejected by an operator' },
  not_found: { status: 404, message: 'no such route' },
  no_assignment: { status: 404, message: 'no assignment resolves for this device' },
  artifact_not_found: { status: 404, message: "this gateway's cache holds no such artifact" },
  delta_not_found: { status: 404, message: 'this gateway holds no such delta; download the full artifact' },
  model_not_found: { status: 404, message: 'no such model in the catalog' },
  assignment_not_found: { status: 404, message: 'no such assignment' },
  group_not_found: { status: 404, message: 'no such group' },
  device_not_found: { status: 404, message: 'this device has never polled this gateway' },
  method_not_allowed: { status: 405, message: 'this method is not allowed on this route' },
  version_conflict: { status: 409, message: 'this version is already stored with other bytes; versions are immutable' },
  in_use: { status: 409, message: 'an assignment resolves to this model' },
  incompatible: { status: 409, message: 'known devices under this selector cannot run this model (missing operators, delegates, memory or slot space)' },
  upstream_owned: { status: 409, message: 'this entry comes from the upstream store; change it there' },
  group_conflict: { status: 409, message: 'a device is in at most one group' },
  no_upstream: { status: 409, message: 'this gateway has no upstream.url configured' },
  body_too_large: { status: 413, message: 'the body is larger than this route accepts' },
  unsupported_format: { status: 415, message: 'the body is not in a format artifacts.formats allows' },
  unsupported_media_type: { status: 415, message: 'this route takes application/json' },
  range_not_satisfiable: { status: 416, message: "the range is outside the artifact's bytes" },
  rate_limited: { status: 429, message: 'this client address is over a limit; try again after Retry-After seconds' },
  busy: { status: 503, message: 'the gateway is at a limit for now; try again after Retry-After seconds' },
  insufficient_storage: { status: 507, message: "the gateway's disk has too little free space for this (beyond its reserve, artifacts.diskReserveBytes); free space on it (delete unused models, run garbage collection) and try again" },
  catalog_full: { status: 507, message: 'the catalog holds as many models as artifacts.maxModels allows; delete unused models first' },
  internal: { status: 500, message: 'the gateway failed to handle this request; see its log' },
  upstream_unreachable: { status: 502, message: 'the upstream store could not be reached, or the connection broke' },
  upstream_error: { status: 502, message: 'the upstream store answered with an error status' },
  upstream_denied: { status: 502, message: "the upstream store refused this gateway's credentials, clock or permissions" },
  manifest_invalid: { status: 502, message: "the upstream store's manifest is not valid" },
  artifact_invalid: { status: 502, message: 'an artifact from the upstream store does not match its manifest entry' },
  sync_aborted: { status: 503, message: 'the sync was stopped because the gateway is shutting down' },
  upstream_timeout: { status: 504, message: 'the upstream store did not answer in time' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

export class ModelferryError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message: string = errorCatalogue[code].message, headers: Record<string, string> = {}) {
    super(message);
    this.name = 'ModelferryError';
    this.code = code;
    this.status = errorCatalogue[code].status;
    this.headers = headers;
  }
}

export function fail(code: ErrorCode, message?: string, headers?: Record<string, string>): never {
  throw new ModelferryError(code, message, headers);
}

export function isModelferryError(error: unknown): error is ModelferryError {
  return error instanceof ModelferryError;
}

/**
 * A configuration the daemon must not start with: the message names the key, the value,
 * where it came from and what is allowed. `modelferry serve` exits 78 on it; a live reload
 * that meets one keeps the running configuration.
 */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
