import type Router from '@koa/router';
import type { DeviceRecord } from '../../devices/device-registry.ts';
import { describeDevice } from '../../devices/fleet-status.ts';
import { fail } from '../../errors.ts';
import { parseMac } from '../../contract/identifiers.ts';
import type { Services } from '../services.ts';

/** A page of the inventory when `limit` is not given, and the most one may ask for: a
 * page is built and serialized in one go, so its size bounds how long that blocks. */
export const INVENTORY_PAGE = 1000;

/** The fleet as this gateway sees it: what each device runs against what it should run. */
export function inventoryRoutes(router: Router, services: Services): void {
  const { devices, catalog, auth, deviceAdmission } = services;

  const describe = (device: DeviceRecord) => ({ ...describeDevice(device, catalog.current), admission: deviceAdmission.admissionOf(device.mac) });

  // Paged in MAC order: `next` is the `after` of the following page, null on the last.
  router.get('/v1/devices', auth.anyToken(), (ctx) => {
    const limit = pageLimit(ctx.query.limit);
    const after = ctx.query.after === undefined ? null : parseMac(String(ctx.query.after));
    const { records, next } = devices.page(limit, after);
    ctx.body = { devices: records.map(describe), next };
  });

  router.get('/v1/devices/:mac', auth.anyToken(), (ctx) => {
    const mac = parseMac(ctx.params.mac!);
    const device = devices.get(mac);
    if (!device) fail('device_not_found', `device ${mac} is not in this gateway's inventory`);
    ctx.body = describe(device);
  });

}

function pageLimit(value: unknown): number {
  if (value === undefined) return INVENTORY_PAGE;
  if (typeof value !== 'string' || !/^\d{1,5}$/.test(value) || Number(value) < 1 || Number(value) > INVENTORY_PAGE) {
    fail('invalid_query', `limit must be a whole number from 1 to ${INVENTORY_PAGE}`);
  }
  return Number(value);
}
