import { validate as validCron } from 'node-cron';
import { z } from 'zod';
import { keyIdSchema } from '../contract/identifiers.ts';
import { admissionPolicies } from '../contract/device-auth.ts';

// The shape of a valid configuration. Defaults live in config/default.yaml, not here, so
// that the file a person reads is the one that runs.

const SIZE_UNITS: Record<string, number> = {
  b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3,
};

/** `16 MiB`, `512kb`, `1048576`: a byte count as a person writes it (0 only where `min` is 0). */
const byteSize = (min = 1) => z.union([z.number(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value >= min) return value;
  } else {
    const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
    const unit = SIZE_UNITS[(match?.[2] || 'b').toLowerCase()];
    if (match && unit) {
      const bytes = Math.floor(Number(match[1]) * unit);
      if (bytes >= min) return bytes;
    }
  }
  ctx.addIssue({ code: 'custom', message: `must be a ${min === 0 ? 'size (0 for none)' : 'positive size'} such as 16 MiB, 512 KiB or a byte count` });
  return z.NEVER;
});

const seconds = (max: number) => z.number().int().min(0).max(max);
/** A duration in seconds, fractions allowed (tests use short ones). */
const positiveSeconds = z.number().gt(0).max(3600);
const token = z.string().min(16, 'must be at least 16 characters (use a random secret)');

/** `assign` writes assignments (what `push --assign` needs); `admin` may do that and the rest. */
export const scopes = ['push', 'assign', 'admin', 'sync'] as const;
export type Scope = (typeof scopes)[number];

export const configSchema = z.strictObject({
  http: z.strictObject({
    host: z.string().min(1),
    port: z.number().int().min(0).max(65535),
    shutdownGraceSeconds: seconds(3600),
    headersTimeoutSeconds: z.number().int().min(1).max(3600),
    requestTimeoutSeconds: z.number().int().min(1).max(86400),
    idleTimeoutSeconds: z.number().int().min(1).max(3600),
    keepAliveTimeoutSeconds: z.number().int().min(1).max(3600),
    maxConnections: z.number().int().min(1).max(1_000_000),
    maxConnectionsPerAddress: z.number().int().min(1).max(1_000_000),
    plain: z.boolean(),
  }).refine((http) => http.headersTimeoutSeconds <= http.requestTimeoutSeconds, {
    message: 'headersTimeoutSeconds must not exceed requestTimeoutSeconds', path: ['headersTimeoutSeconds'],
  }),
  tls: z.strictObject({
    enabled: z.boolean(),
    port: z.number().int().min(0).max(65535),
    certFile: z.string().min(1).nullable(),
    keyFile: z.string().min(1).nullable(),
  }).refine((tls) => (tls.certFile === null) === (tls.keyFile === null), {
    message: 'certFile and keyFile go together: give both (a certificate and its key), or neither (the gateway makes its own)', path: ['certFile'],
  }),
  paths: z.strictObject({
    state: z.string().min(1),
    cache: z.string().min(1),
  }),
  log: z.strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  }),
  mdns: z.strictObject({
    enabled: z.boolean(),
    name: z.string().max(63),
    priority: z.number().int().min(0).max(65535),
    addressCheckSeconds: z.number().int().min(1).max(3600),
    minAnnounceIntervalSeconds: z.number().min(0.1).max(3600),
    maxResponsesPerSecond: z.number().int().min(1).max(10000),
  }),
  auth: z.strictObject({
    tokens: z.array(z.strictObject({
      name: z.string().min(1),
      token,
      scopes: z.array(z.enum(scopes)).min(1),
    })),
  }),
  devices: z.strictObject({
    token: token.nullable(),
    admission: z.enum(admissionPolicies),
    tokenSeconds: z.number().int().min(60).max(7 * 86400),
    maxPending: z.number().int().min(1).max(1_000_000),
    maxWaitSeconds: seconds(3600),
    pollIntervalSeconds: z.number().int().min(1).max(86400),
    pollJitterSeconds: seconds(86400),
    seenFlushSeconds: z.number().int().min(1).max(3600),
    maxKnown: z.number().int().min(1).max(10_000_000),
    newPerAddressPerMinute: z.number().int().min(1).max(1_000_000),
    maxLongPolls: z.number().int().min(0).max(1_000_000),
    maxLongPollsPerAddress: z.number().int().min(0).max(1_000_000),
  }),
  trust: z.strictObject({
    keys: z.array(z.strictObject({
      id: keyIdSchema.optional(),
      publicKey: z.string().min(1),
    })),
    requireSignatures: z.boolean(),
  }),
  artifacts: z.strictObject({
    maxBytes: byteSize(),
    formats: z.array(z.enum(['executorch', 'any'])).min(1),
    memoryCacheBytes: byteSize(0),
    diskReserveBytes: byteSize(0),
    maxConcurrentPushes: z.number().int().min(1).max(1000),
    maxModels: z.number().int().min(1).max(1_000_000),
  }),
  upstream: z.strictObject({
    url: z.url({ protocol: /^(https?|s3)$/, message: 'must be an http:// or https:// URL of a manifest, or s3://BUCKET/PREFIX/manifest.json' })
      .refine((url) => !url.startsWith('s3:') || /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/.+[^/]$/.test(url), 'an s3:// address names a bucket and the manifest\'s key: s3://BUCKET/PREFIX/manifest.json')
      .nullable(),
    token: token.nullable(),
    schedule: z.string().refine((expression) => validCron(expression), 'must be a cron expression such as */5 * * * *'),
    maxRandomDelaySeconds: seconds(3600),
    concurrency: z.number().int().min(1).max(64),
    connectTimeoutSeconds: positiveSeconds,
    headersTimeoutSeconds: positiveSeconds,
    bodyIdleTimeoutSeconds: positiveSeconds,
    maxManifestBytes: byteSize(),
    breakerFailures: z.number().int().min(1).max(1000),
    breakerCooldownSeconds: positiveSeconds,
    syncTimeoutSeconds: positiveSeconds,
    s3: z.strictObject({
      endpoint: z.url({ protocol: /^https?$/, message: 'must be an http:// or https:// URL such as http://minio.lan:9000' }).nullable().default(null),
      region: z.string().regex(/^[a-z0-9-]{1,40}$/, 'must be a region name such as eu-central-1').nullable().default(null),
      accessKeyId: z.string().min(1).max(128).nullable().default(null),
      secretAccessKey: z.string().min(1).max(256).nullable().default(null),
      secretAccessKeyFile: z.string().min(1).nullable().default(null),
      forcePathStyle: z.boolean().nullable().default(null),
    }).refine((s3) => s3.secretAccessKey === null || s3.secretAccessKeyFile === null, {
      message: 'give secretAccessKey or secretAccessKeyFile, not both', path: ['secretAccessKeyFile'],
    }),
    report: z.boolean(),
    reportIntervalSeconds: z.number().min(1).max(86400),
  }).refine((upstream) => !upstream.report || upstream.url?.startsWith('s3://'), {
    message: 'reports are written into an s3:// store: set upstream.url to s3://BUCKET/PREFIX/manifest.json, or upstream.report to false', path: ['report'],
  }),
  inbox: z.strictObject({
    dir: z.string().min(1).nullable(),
    settleSeconds: positiveSeconds,
    checkSeconds: positiveSeconds,
  }),
  cache: z.strictObject({
    gcGraceHours: z.number().min(0).max(24 * 365),
    gcIntervalMinutes: z.number().gt(0).max(24 * 60),
    deltaBytes: byteSize(0),
  }),
  deltas: z.strictObject({
    maxShare: z.number().gt(0).max(1),
    waitSeconds: seconds(3600),
  }),
}).superRefine((config, ctx) => {
  if (!config.http.plain && !config.tls.enabled) {
    ctx.addIssue({ code: 'custom', path: ['http', 'plain'], message: 'plain HTTP can be switched off only when tls.enabled is true: the gateway would listen nowhere' });
  }
  if (config.http.plain && config.tls.enabled && config.tls.port === config.http.port && config.http.port !== 0) {
    ctx.addIssue({ code: 'custom', path: ['tls', 'port'], message: `must differ from http.port (${config.http.port}): plain HTTP and HTTPS listen on ports of their own` });
  }
});

export type Config = z.infer<typeof configSchema>;
