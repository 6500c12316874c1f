// Device identity on the wire (docs/design.md "Device identity"): the admission policies a
// gateway runs under, and the message a device signs to prove its key.

/**
 * - open: any device, as on a trusted LAN; nothing is proven.
 * - pinned: trust on first use; the first key a MAC proves is pinned, a later other key is refused.
 * - accepted: a new device waits as pending until an operator accepts it, unless its MAC and
 *   key were preauthorized (a manufacturing list).
 */
export const admissionPolicies = ['open', 'pinned', 'accepted'] as const;
export type AdmissionPolicy = (typeof admissionPolicies)[number];

/** What a device signs with its Ed25519 key: the gateway's random challenge, bound to its MAC. */
export function deviceAuthMessage(mac: string, challenge: string): Buffer {
  return Buffer.from(`modelferry-device-v1:${mac}:${challenge}`, 'utf8');
}
