import type Router from '@koa/router';
import type { DeviceRecord } from '../../devices/device-registry.ts';
import { fail } from '../../errors.ts';
import { parseMac } from '../../identifiers.ts';
import type { Services } from '../services.ts';

/** The fleet as this gateway sees it: what each device runs against what it should run. */
export function inventoryRoutes(router: Router, services: Services): void {
  const { devices, catalog, auth } = services;

  const describe = (device: DeviceRecord) => {
    const resolution = catalog.current.resolveDevice(device.mac);
    const assigned = resolution
      ? {
          model: resolution.model.name,
          version: resolution.model.version,
          sha256: resolution.model.sha256,
          selector: resolution.assignment.selector,
          heldByRollout: resolution.held,
        }
      : null;
    const running = device.report?.sha256 ?? null;
    return {
      mac: device.mac,
      firstSeen: device.firstSeen,
      lastSeen: device.lastSeen,
      address: device.address,
      group: catalog.current.groupOf(device.mac) ?? null,
      state: device.report?.state ?? null,
      running: running === null ? null : { sha256: running, model: device.report?.model ?? null, version: device.report?.version ?? null },
      assigned,
      inSync: assigned === null ? null : running === assigned.sha256,
      report: device.report,
    };
  };

  router.get('/v1/devices', auth.require('admin'), (ctx) => {
    ctx.body = { devices: devices.list().map(describe) };
  });

  router.get('/v1/devices/:mac', auth.require('admin'), (ctx) => {
    const mac = parseMac(ctx.params.mac!);
    const device = devices.get(mac);
    if (!device) fail('device_not_found', `device ${mac} has never polled this gateway`);
    ctx.body = describe(device);
  });

}
