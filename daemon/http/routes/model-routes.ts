import type Router from '@koa/router';
import type { Context } from 'koa';
import type { ModelRecord } from '../../catalog/types.ts';
import { fail, isModelferryError } from '../../errors.ts';
import { parseModelName, parseVersion } from '../../contract/identifiers.ts';
import { pauseIdleTimeout } from '../http-server.ts';
import { tooLarge } from '../json-body.ts';
import type { Services } from '../services.ts';

/** What a push refused for the concurrency limit is told to wait: about one push on a Pi. */
const PUSH_RETRY_SECONDS = 5;

export function modelRoutes(router: Router, services: Services): void {
  const { catalog, blobs, metrics } = services;
  /** Pushes receiving now: each may hold up to artifacts.maxBytes in tmp/ and a CPU hashing. */
  let pushing = 0;

  router.put('/v1/models/:name/:version', services.auth.scope('push'), async (ctx) => {
    try {
      const { status, record } = await receiveModel(ctx);
      metrics.pushes.inc({ outcome: status === 201 ? 'created' : 'unchanged' });
      ctx.status = status;
      ctx.set('Location', `/v1/models/${record.name}/${record.version}`);
      ctx.body = record;
    } catch (error) {
      metrics.pushes.inc({ outcome: isModelferryError(error) ? error.code : 'internal' });
      throw error;
    }
  });

  /** The push: admitted the way every model is (admission); here, the HTTP side of it. */
  async function receiveModel(ctx: Context): Promise<{ status: 200 | 201; record: ModelRecord }> {
    const candidate = {
      name: ctx.params.name!,
      version: ctx.params.version!,
      sha256: declaredDigest(ctx),
      size: ctx.get('Content-Length') === '' ? null : Number(ctx.get('Content-Length')),
      claim: { signature: ctx.get('X-Signature') || null, keyId: ctx.get('X-Signature-Key-Id') || null, seq: ctx.get('X-Signature-Seq') || null },
    };

    // Once the client has sent everything, the gateway is the slow one (fsync on an SD card,
    // reading the program), which the idle timeout must not take for a stalled client. Node
    // puts the keep-alive timeout back once the answer is sent.
    ctx.req.once('end', () => pauseIdleTimeout(ctx.req));
    let slot = false;
    try {
      const { created, record } = await services.admission.admit([candidate], services.admission.streamed({
        client: String(ctx.state.client),
        size: candidate.size,
        read: (receive) => receive(ctx.req),
        beforeBytes() {
          const limit = services.config.artifacts.maxConcurrentPushes;
          if (pushing >= limit) {
            fail('busy', `the gateway is receiving its maximum of ${limit} pushes at once (artifacts.maxConcurrentPushes); try again after Retry-After seconds`, { 'Retry-After': String(PUSH_RETRY_SECONDS) });
          }
          pushing++;
          slot = true;
        },
      }));
      return { status: created ? 201 : 200, record };
    } catch (error) {
      // Stop reading, let the rest drain and close the connection after the answer.
      if (isModelferryError(error) && error.code === 'body_too_large') tooLarge(ctx, services.admission.maxBytes);
      if (!ctx.req.complete) ctx.req.resume();
      throw error;
    } finally {
      if (slot) pushing--;
    }
  }

  router.get('/v1/models', services.auth.anyToken(), (ctx) => {
    ctx.body = { revision: catalog.current.revision, models: [...catalog.current.models.values()].map(withCacheState) };
  });

  router.get('/v1/models/:name', services.auth.anyToken(), (ctx) => {
    const name = parseModelName(ctx.params.name!);
    const versions = catalog.current.versionsOf(name);
    if (versions.length === 0) fail('model_not_found', `no model named ${name} in the catalog`);
    ctx.body = { name, versions: versions.map(withCacheState) };
  });

  router.get('/v1/models/:name/:version', services.auth.anyToken(), (ctx) => {
    const name = parseModelName(ctx.params.name!);
    const version = parseVersion(ctx.params.version!);
    const model = catalog.current.resolveRef({ model: name, version });
    if (!model) fail('model_not_found', `no model ${name}@${version} in the catalog`);
    ctx.body = withCacheState(model);
  });

  router.delete('/v1/models/:name/:version', services.auth.scope('admin'), async (ctx) => {
    const name = parseModelName(ctx.params.name!);
    const version = parseVersion(ctx.params.version!);
    await catalog.deleteModel(name, version);
    services.log.info({ model: name, version, client: ctx.state.client }, 'model deleted');
    ctx.status = 204;
  });

  function withCacheState<T extends ModelRecord>(model: T): T & { cached: boolean } {
    return { ...model, cached: blobs.holds(model) };
  }

}

/** `Repr-Digest: sha-256=:<base64>:` (RFC 9530) or `X-Content-SHA256: <hex>`; both must agree. */
function declaredDigest(ctx: Context): string | null {
  const found: string[] = [];
  const repr = ctx.get('Repr-Digest');
  if (repr) {
    for (const member of repr.split(',')) {
      const match = /^\s*sha-256\s*=\s*:([A-Za-z0-9+/=]*):\s*$/i.exec(member);
      if (!match) {
        // Other algorithms may be ignored (RFC 9530), but a sha-256 member that is not a
        // byte sequence must not silently skip the check the client asked for.
        if (/^\s*sha-256\s*(=|;|$)/i.test(member)) fail('invalid_digest', 'Repr-Digest sha-256 must be a byte sequence: sha-256=:<base64 of 32 bytes>:');
        continue;
      }
      const bytes = Buffer.from(match[1]!, 'base64');
      if (bytes.length !== 32) fail('invalid_digest', 'Repr-Digest sha-256 must be the base64 of 32 bytes');
      found.push(bytes.toString('hex'));
    }
  }
  const hex = ctx.get('X-Content-SHA256');
  if (hex) {
    if (!/^[0-9a-fA-F]{64}$/.test(hex.trim())) fail('invalid_digest', 'X-Content-SHA256 must be 64 hex characters');
    found.push(hex.trim().toLowerCase());
  }
  if (found.length === 0) return null;
  if (found.some((digest) => digest !== found[0])) fail('digest_mismatch', 'Repr-Digest and X-Content-SHA256 name different digests');
  return found[0]!;
}
