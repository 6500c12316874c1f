import type Router from '@koa/router';
import { z } from 'zod';
import { isMac, parseMac } from '../../contract/identifiers.ts';
import { fail } from '../../errors.ts';
import { readJsonAs } from '../json-body.ts';
import type { Services } from '../services.ts';

const proofSchema = z.strictObject({
  publicKey: z.string().max(64),
  challenge: z.string().max(64),
  signature: z.string().max(128),
});

/** A manufacturing list is small next to this: 10,000 devices. */
const MAX_PREAUTHORIZED = 10_000;
const preauthorizeSchema = z.strictObject({
  devices: z.array(z.strictObject({ mac: z.string().refine(isMac, 'must be a MAC address'), publicKey: z.string().max(64) })).min(1).max(MAX_PREAUTHORIZED),
});

/** Bigger than a token request; the preauthorization list bounds its own size. */
const PREAUTHORIZE_BODY_LIMIT = 1024 * 1024;
const PROOF_BODY_LIMIT = 1024;

/**
 * Device identity (docs/security.md "Device identity"): a device proves its Ed25519 key by
 * signing a challenge and gets a short-lived token for its own MAC; operators accept,
 * reject and preauthorize devices.
 */
export function identityRoutes(router: Router, services: Services): void {
  const { deviceAdmission: admission, auth } = services;

  router.post('/v1/devices/:mac/challenge', (ctx) => {
    ctx.body = admission.challenge(parseMac(ctx.params.mac!));
  });

  router.post('/v1/devices/:mac/token', async (ctx) => {
    const mac = parseMac(ctx.params.mac!);
    const proof = await readJsonAs(ctx, PROOF_BODY_LIMIT, proofSchema);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await admission.token(mac, proof);
  });

  router.get('/v1/admission', auth.anyToken(), (ctx) => {
    const state = ctx.query.state;
    if (state !== undefined && !['pending', 'accepted', 'rejected', 'pinned'].includes(String(state))) {
      fail('invalid_query', 'state must be pending, accepted, rejected or pinned');
    }
    const records = admission.records(state as 'pending' | undefined);
    ctx.body = { policy: admission.policy, devices: records.sort((a, b) => (a.mac < b.mac ? -1 : 1)) };
  });

  router.post('/v1/devices/:mac/accept', auth.scope('admin'), async (ctx) => {
    ctx.body = await admission.accept(parseMac(ctx.params.mac!));
  });

  router.post('/v1/devices/:mac/reject', auth.scope('admin'), async (ctx) => {
    ctx.body = await admission.reject(parseMac(ctx.params.mac!));
  });

  router.post('/v1/admission/preauthorize', auth.scope('admin'), async (ctx) => {
    const { devices } = await readJsonAs(ctx, PREAUTHORIZE_BODY_LIMIT, preauthorizeSchema);
    const count = await admission.preauthorize(devices.map(({ mac, publicKey }) => ({ mac: parseMac(mac), publicKey })));
    ctx.body = { preauthorized: count };
  });
}
