import type Router from '@koa/router';
import type { DeviceRecord } from '../../devices/device-registry.ts';
import { describeDevice } from '../../devices/fleet-status.ts';
import { fail } from '../../errors.ts';
import { parseMac } from '../../contract/identifiers.ts';
import type { Services } from '../services.ts';

/** The fleet as this gateway sees it: what each device runs against what it should run. */
export function inventoryRoutes(router: Router, services: Services): void {
  const { devices, catalog, auth } = services;

  const describe = (device: DeviceRecord) => describeDevice(device, catalog.current);

  router.get('/v1/devices', auth.anyToken(), (ctx) => {
    ctx.body = { devices: devices.list().map(describe) };
  });

  router.get('/v1/devices/:mac', auth.anyToken(), (ctx) => {
    const mac = parseMac(ctx.params.mac!);
    const device = devices.get(mac);
    if (!device) fail('device_not_found', `device ${mac} has never polled this gateway`);
    ctx.body = describe(device);
  });

}
