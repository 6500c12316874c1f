import { z } from 'zod';
import { digestSchema, modelNameSchema, versionTextSchema } from './identifiers.ts';

// The body of `POST /v1/devices/{mac}/report` (DESIGN.md section 2).

/** DESIGN.md section 2: a device report is at most 4 KiB. */
export const REPORT_BODY_LIMIT = 4 * 1024;

export const deviceStates = ['idle', 'downloading', 'verifying', 'installed', 'failed'] as const;

// Unknown fields are refused with their name (400 invalid_body): a report the gateway would
// silently half-read hides a firmware bug. A field is added here before firmware sends it.
export const deviceReportSchema = z.strictObject({
  state: z.enum(deviceStates),
  sha256: digestSchema.optional(),
  model: modelNameSchema.optional(),
  version: versionTextSchema.optional(),
  error: z.string().max(512).optional(),
  progress: z.number().min(0).max(1).optional(),
  firmware: z.string().max(64).optional(),
  freeHeap: z.number().int().min(0).optional(),
  rssi: z.number().int().min(-150).max(0).optional(),
  uptimeSeconds: z.number().int().min(0).optional(),
});

export type DeviceReport = z.infer<typeof deviceReportSchema>;
export type DeviceState = DeviceReport['state'];
