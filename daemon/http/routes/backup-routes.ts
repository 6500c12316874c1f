import { Readable } from 'node:stream';
import type Router from '@koa/router';
import { backupArchive } from '../../backup/backup.ts';
import type { Services } from '../services.ts';

/**
 * `GET /v1/backup` (scope admin): a consistent snapshot of the gateway as a tar stream:
 * config, database, blobs (backup.ts). The daemon owns LevelDB, so a backup must come
 * through it; `modelferry backup FILE` saves this and `modelferry restore FILE` replays it.
 */
export function backupRoutes(router: Router, services: Services): void {
  const { auth, database, devices, blobs, gatewayId, configFile, log } = services;

  router.get('/v1/backup', auth.scope('admin'), async (ctx) => {
    const stamp = new Date().toISOString().slice(0, 10);
    const archive = backupArchive({ database, devices, blobs, gatewayId, configFile });
    // The first chunk is produced before answering, so a failure to snapshot is an error
    // answer rather than a cut stream.
    const first = await archive.next();
    const body = Readable.from((async function* () {
      if (!first.done) yield first.value;
      yield* archive;
    })());
    body.on('error', (error) => log.error({ err: error }, 'backup stream failed'));
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Content-Disposition', `attachment; filename="modelferry-${gatewayId}-${stamp}.tar"`);
    ctx.type = 'application/x-tar';
    ctx.body = body;
    log.info({ gateway: gatewayId }, 'backup requested');
  });
}
