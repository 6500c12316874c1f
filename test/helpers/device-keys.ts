import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

// A device's own Ed25519 key and the proof it sends for a token, as the firmware makes them
// (docs/security.md "Device identity"): the gateway's challenge, signed as
// `modelferry-device-v1:<mac>:<challenge>`.

export interface DeviceKey {
  mac: string;
  privateKey: KeyObject;
  /** The raw 32-byte public key, base64, as a device sends it. */
  publicKey: string;
}

export function deviceKey(mac: string): DeviceKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  return { mac, privateKey, publicKey: raw.toString('base64') };
}

/** The body of `POST /v1/devices/{mac}/token` answering `challenge` (signed by `key`, the device's own unless told). */
export function proofOf(device: DeviceKey, challenge: string, key = device.privateKey): { publicKey: string; challenge: string; signature: string } {
  const signature = sign(null, Buffer.from(`modelferry-device-v1:${device.mac}:${challenge}`), key).toString('base64');
  return { publicKey: device.publicKey, challenge, signature };
}

/** A device token from the gateway at `baseUrl`: a challenge, then its signed proof. */
export async function provenToken(baseUrl: string, device: DeviceKey): Promise<string> {
  const challenge = await fetch(`${baseUrl}/v1/devices/${device.mac}/challenge`, { method: 'POST' });
  if (challenge.status !== 200) throw new Error(`challenge for ${device.mac}: ${challenge.status} ${await challenge.text()}`);
  const { challenge: value } = await challenge.json() as { challenge: string };
  const answer = await fetch(`${baseUrl}/v1/devices/${device.mac}/token`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(proofOf(device, value)),
  });
  if (answer.status !== 200) throw new Error(`token for ${device.mac}: ${answer.status} ${await answer.text()}`);
  return (await answer.json() as { token: string }).token;
}
