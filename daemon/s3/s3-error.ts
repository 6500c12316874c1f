import { ModelferryError, type ErrorCode } from '../errors.ts';
import type { S3Access, S3Object } from './s3-access.ts';

// S3 answers a refusal with an XML body (`<Error><Code>...`). What a person can fix is in
// it: the key id or secret, the bucket's name or region, the gateway's clock, a permission.
// Each becomes a sentence that says so, under a stable code (docs/http-api.md "Errors").

export interface S3ErrorBody {
  code: string | null;
  message: string | null;
  fields: Record<string, string>;
}

/** The fields of an S3 error document; tolerant of anything else (a proxy's HTML page). */
export function parseS3Error(text: string): S3ErrorBody {
  const fields: Record<string, string> = {};
  const body = /<Error>([\s\S]*)<\/Error>/.exec(text)?.[1] ?? '';
  for (const match of body.matchAll(/<([A-Za-z][\w-]*)>([^<]*)<\/\1>/g)) fields[match[1]!] = unescapeXml(match[2]!);
  return { code: fields.Code ?? null, message: fields.Message ?? null, fields };
}

/** A refusal from S3, with the code S3 gave (or the one its status means). */
export class S3Refusal extends ModelferryError {
  readonly s3Code: string | null;

  constructor(code: ErrorCode, message: string, s3Code: string | null) {
    super(code, message);
    this.s3Code = s3Code;
  }
}

export interface S3Exchange {
  method: string;
  object: S3Object;
  /** The prefix a listing asked for (ListBucket is granted per prefix). */
  listing?: string;
  access: S3Access;
  status: number;
  /** The response's headers (x-amz-bucket-region, date). */
  headers: Record<string, string | string[] | undefined>;
  /** The gateway's clock when the request was signed. */
  sentAt: Date;
}

const ACTION: Record<string, string> = { GET: 's3:GetObject', HEAD: 's3:GetObject', PUT: 's3:PutObject', LIST: 's3:ListBucket' };

/** A refusal from S3 as an error that says what to fix. */
export function s3Failure(exchange: S3Exchange, body: S3ErrorBody): S3Refusal {
  const { method, object, access, status } = exchange;
  const where = exchange.listing !== undefined ? `the listing of s3://${object.bucket}/${exchange.listing}` : object.key === '' ? `the bucket ${object.bucket}` : `s3://${object.bucket}/${object.key}`;
  const keyId = access.credentials?.accessKeyId ?? null;
  // A HEAD answer has no body: its status is all there is.
  const code = body.code ?? (status === 404 ? (object.key === '' ? 'NoSuchBucket' : 'NoSuchKey') : status === 403 ? 'AccessDenied' : null);
  const said = code === null ? `${status}` : `${status} ${code}`;
  switch (code) {
    case 'InvalidAccessKeyId':
      return new S3Refusal('upstream_denied', `the store does not know the access key id ${keyId ?? '(none)'} (${said}): check upstream.s3.accessKeyId or AWS_ACCESS_KEY_ID, and that the key is active`, code);
    case 'SignatureDoesNotMatch':
      return new S3Refusal('upstream_denied', `the store refused the request's signature (${said}): the secret access key is not the one of access key id ${keyId ?? '(none)'}; check upstream.s3.secretAccessKey, upstream.s3.secretAccessKeyFile or AWS_SECRET_ACCESS_KEY`, code);
    case 'RequestTimeTooSkewed':
      return new S3Refusal('upstream_denied', `the store refused the request because this machine's clock is off${skewText(exchange, body)} (${said}; S3 allows 15 minutes): set the clock (NTP: timedatectl set-ntp true) and sync again`, code);
    case 'AccessDenied':
    case 'AllAccessDisabled':
      return new S3Refusal('upstream_denied', `the store denied ${ACTION[method] ?? method} on ${where} to ${keyId === null ? 'anonymous requests (no S3 credentials are configured)' : `access key id ${keyId}`} (${said}): grant it in the key's IAM policy (docs/central-store.md "Many sites on S3")`, code);
    case 'NoSuchBucket':
      return new S3Refusal('upstream_error', `there is no bucket named ${object.bucket} at ${endpointText(access)} (${said}): check the bucket in the s3:// address, upstream.s3.endpoint and upstream.s3.region`, code);
    case 'PreconditionFailed':
      return new S3Refusal('upstream_error', `${where} changed while this was being written (${said}): another publish got there first; run it again`, code);
    case 'NoSuchKey':
      return new S3Refusal('upstream_error', `${where} does not exist (${said})${object.key.endsWith('manifest.json') ? ': nothing was published under that prefix yet, or the prefix is wrong' : ''}`, code);
    case 'PermanentRedirect':
    case 'AuthorizationHeaderMalformed':
    case 'IllegalLocationConstraintException': {
      const region = header(exchange.headers, 'x-amz-bucket-region') ?? body.fields.Region;
      if (region && region !== access.region) {
        return new S3Refusal('upstream_error', `the bucket ${object.bucket} is in region ${region}, not ${access.region} (${said}): set upstream.s3.region (or AWS_REGION) to ${region}`, code);
      }
      break;
    }
    default:
      break;
  }
  return new S3Refusal(status === 403 ? 'upstream_denied' : 'upstream_error', `${endpointText(access)} answered ${said} for ${method} ${where}${body.message ? `: ${body.message}` : ''}`, code);
}

/** `by 20 min 5 s (ahead)`, from S3's RequestTime and ServerTime, else from its Date header. */
function skewText(exchange: S3Exchange, body: S3ErrorBody): string {
  const server = parseS3Time(body.fields.ServerTime) ?? parseS3Time(header(exchange.headers, 'date'));
  const ours = parseS3Time(body.fields.RequestTime) ?? exchange.sentAt.getTime();
  if (server === null) return '';
  const skew = ours - server;
  const seconds = Math.round(Math.abs(skew) / 1000);
  const text = seconds >= 3600 ? `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`
    : seconds >= 60 ? `${Math.floor(seconds / 60)} min ${seconds % 60} s` : `${seconds} s`;
  return ` by ${text} (${skew > 0 ? 'ahead of' : 'behind'} the store's)`;
}

/** `20261124T120000Z` (SigV4's form), ISO 8601 or an HTTP date, as ms since the epoch. */
function parseS3Time(text: string | undefined): number | null {
  if (!text) return null;
  const compact = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  const ms = compact ? Date.UTC(+compact[1]!, +compact[2]! - 1, +compact[3]!, +compact[4]!, +compact[5]!, +compact[6]!) : Date.parse(text);
  return Number.isNaN(ms) ? null : ms;
}

function endpointText(access: S3Access): string {
  return access.endpoint?.host ?? `s3.${access.region}.amazonaws.com`;
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function unescapeXml(text: string): string {
  return text.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-f]+);/gi, (entity, name: string) => {
    const named: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
    if (name[0] !== '#') return named[name.toLowerCase()] ?? entity;
    return String.fromCodePoint(name[1] === 'x' || name[1] === 'X' ? Number.parseInt(name.slice(2), 16) : Number(name.slice(1)));
  });
}
