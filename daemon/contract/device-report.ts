import { z } from 'zod';
import { digestSchema, modelNameSchema, versionTextSchema } from './identifiers.ts';

// The body of `POST /v1/devices/{mac}/report` (docs/design.md "Device reports").

/** docs/design.md "Device reports": a device report is at most 4 KiB... */
export const REPORT_BODY_LIMIT = 4 * 1024;
/** ...unless it carries `capabilities`, which may take it up to 64 KiB. */
export const REPORT_WITH_CAPABILITIES_LIMIT = 64 * 1024;

/** Bounds of `capabilities` (docs/design.md "Device reports"): firmware is built against them. */
export const CAPABILITY_LIMITS = { operators: 2048, delegates: 64, patchFormats: 16, nameLength: 128, runtimeLength: 64 } as const;

/** The delta format the gateway makes (docs/design.md "Deltas"), as a device names it in `capabilities.patch`. */
export const FOSSIL_DELTA = 'fossil';

// An operator as the runtime's kernel registry names it (`aten::add.out`), a delegate by its
// backend id (`XnnpackBackend`): printable ASCII without spaces.
const capabilityName = z.string().min(1).max(CAPABILITY_LIMITS.nameLength).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');
const byteCount = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/**
 * What a device's firmware can run: the kernels it was built with (selective build), its
 * backends, the arena it gives a method's planned memory, the size of a model slot, and
 * the delta formats it applies.
 * Sent after boot and when it changes; the gateway keeps the last one per device.
 */
// Each field is optional: absent means "not stated", as an empty list or 0 does (a device
// with no delegates, or a client that does not know its arena, may leave it out).
export const capabilitiesSchema = z.object({
  operators: z.array(capabilityName).max(CAPABILITY_LIMITS.operators).default([]),
  delegates: z.array(capabilityName).max(CAPABILITY_LIMITS.delegates).default([]),
  arenaBytes: byteCount.optional(),
  slotBytes: byteCount.optional(),
  runtime: z.string().max(CAPABILITY_LIMITS.runtimeLength).optional(),
  /** Delta formats the firmware applies (`fossil`); absent or empty: full downloads only. */
  patch: z.array(capabilityName).max(CAPABILITY_LIMITS.patchFormats).optional(),
});

export type Capabilities = z.output<typeof capabilitiesSchema>;

export const deviceStates = ['idle', 'downloading', 'verifying', 'installed', 'failed'] as const;

// Unknown fields are refused with their name (400 invalid_body): a report the gateway would
// silently half-read hides a firmware bug. A field is added here before firmware sends it.
export const deviceReportSchema = z.strictObject({
  state: z.enum(deviceStates),
  sha256: digestSchema.optional(),
  model: modelNameSchema.optional(),
  version: versionTextSchema.optional(),
  error: z.string().max(512).optional(),
  /**
   * With `failed`: the sha256 of the model the device installed, could not confirm (the
   * application rejected it, or it crashed or timed out before confirming) and rolled back
   * from. `sha256` is then what it runs again, and `error` says why.
   */
  rolledBackFrom: digestSchema.optional(),
  progress: z.number().min(0).max(1).optional(),
  firmware: z.string().max(64).optional(),
  freeHeap: z.number().int().min(0).optional(),
  rssi: z.number().int().min(-150).max(0).optional(),
  uptimeSeconds: z.number().int().min(0).optional(),
  capabilities: capabilitiesSchema.optional(),
});

export type DeviceReport = z.infer<typeof deviceReportSchema>;
export type DeviceState = DeviceReport['state'];
