import path from 'node:path';
import { Readable } from 'node:stream';
import { Catalog } from '../daemon/catalog/catalog.ts';
import { DeviceRegistry } from '../daemon/devices/device-registry.ts';
import { createLogger } from '../daemon/log.ts';
import { BlobStore, blobDirsOf } from '../daemon/store/blob-store.ts';
import { Database } from '../daemon/store/database.ts';
import { makeProgram } from '../test/helpers/programs.ts';

// A stored gateway state of the size the start-up target names: `models` models (small
// blobs, one version each), all assigned through groups and default, and `devices` devices
// that have polled and reported. Written through the daemon's own parts, as pushes and
// polls would leave it.

export function macOf(index: number): string {
  const hex = index.toString(16).padStart(12, '0');
  return hex.match(/../g)!.join(':');
}

export async function seedFleet(dir: string, models: number, devices: number): Promise<void> {
  const log = createLogger('silent');
  const db = new Database(path.join(dir, 'state'), log);
  const blobs = new BlobStore(blobDirsOf({ state: path.join(dir, 'state'), cache: path.join(dir, 'cache') }), log);
  const catalog = new Catalog(db, blobs, log);
  const registry = new DeviceRegistry(db, log, { seenFlushSeconds: 3600, maxKnown: 1_000_000, newPerAddressPerMinute: 1_000_000 }, () => true);
  for (const part of [db, blobs, catalog, registry]) await part.start();
  try {
    const digests: string[] = [];
    for (let i = 0; i < models; i++) {
      const pending = await blobs.receive(Readable.from([makeProgram(4096)]), 1 << 20);
      await catalog.addModel({
        name: `model-${i}`, version: '1.0.0', sha256: pending.sha256, size: pending.size, format: 'executorch',
        signature: null, keyId: null, createdAt: new Date(Date.UTC(2026, 10, 1) + i * 1000).toISOString(),
      }, () => pending.commit());
      digests.push(pending.sha256);
    }
    const groups = Math.min(100, models);
    for (let g = 0; g < groups; g++) {
      const members = [];
      for (let d = g; d < devices; d += groups * 2) members.push(macOf(d));
      await catalog.setGroup(`group-${g}`, members);
      await catalog.setAssignment({ selector: `group:group-${g}`, model: `model-${g}`, version: 'latest', rollout: null, updatedAt: new Date().toISOString() });
    }
    await catalog.setAssignment({ selector: 'default', model: 'model-0', version: 'latest', rollout: null, updatedAt: new Date().toISOString() });
    const at = new Date();
    for (let d = 0; d < devices; d++) {
      registry.report(macOf(d), `10.${(d >> 16) & 255}.${(d >> 8) & 255}.${d & 255}`, true, {
        state: 'installed', sha256: digests[d % digests.length], model: `model-${d % models}`, version: '1.0.0',
        firmware: '1.4.2', freeHeap: 180_000, rssi: -61, uptimeSeconds: 3600,
      }, at);
    }
  } finally {
    for (const part of [registry, catalog, blobs, db]) await part.stop();
  }
}
