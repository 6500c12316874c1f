import { createHash } from 'node:crypto';

/**
 * A device's rollout bucket, 0..99, from sha256("<mac>:<name>:<version>"). Every gateway
 * computes the same cohorts, the cohort changes with each release so the same devices are
 * not always first, and raising the percentage only ever adds devices.
 */
export function rolloutBucket(mac: string, name: string, version: string): number {
  return createHash('sha256').update(`${mac}:${name}:${version}`).digest().readUInt32BE(0) % 100;
}
