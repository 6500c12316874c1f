/**
 * The routes that two paths answer (a fast path before Koa, the Koa route after it),
 * declared once: both register and count under these patterns, so the metrics see one
 * route whichever path answered.
 */
export const DEVICE_POLL_ROUTE = '/v1/devices/:mac/model';
export const ARTIFACT_ROUTE = '/v1/artifacts/:sha256';
