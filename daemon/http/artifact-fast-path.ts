import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream';
import { isDigest } from '../contract/identifiers.ts';
import { isModelferryError } from '../errors.ts';
import { artifactBytes, artifactNotFound, artifactResponder } from './artifact-responder.ts';
import { preparedError, sendPrepared } from './prepared-response.ts';
import type { Services } from './services.ts';

const ARTIFACT_PATH = /^\/v1\/artifacts\/([0-9a-f]{64})$/;

/**
 * Artifact GET and HEAD without Koa: a device resuming a download on flaky Wi-Fi asks for
 * one small Range after another, and Koa's stack per piece would cost more than the piece.
 * Taken here: GET or HEAD, no query, a well-formed digest the cache holds, an admitted
 * device. Everything else goes on to the Koa route. Both answer through artifact-responder.ts.
 */
export function artifactFastPath(services: Services): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { blobs, hotBlobs, auth, log } = services;
  const respond = artifactResponder(services.metrics);

  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const match = ARTIFACT_PATH.exec(req.url ?? '');
    if (!match || !isDigest(match[1]!) || !auth.admitsArtifactReader(req.headers.authorization)) return false;
    const sha256 = match[1]!;
    const size = blobs.size(sha256);
    if (size === undefined) return false;
    let answer;
    try {
      answer = respond(sha256, size, {
        method: req.method,
        ifNoneMatch: req.headers['if-none-match'],
        range: req.headers.range,
        ifRange: req.headers['if-range'] as string | undefined,
      });
    } catch (error) {
      if (!isModelferryError(error)) throw error;
      sendPrepared(res, preparedError(error));
      return true;
    }
    const { head, body } = answer;
    if (!body) {
      sendPrepared(res, head);
      return true;
    }
    // A blob being sent is held, so garbage collection waits until the response is over.
    const held = hotBlobs.peek(sha256);
    if (held) {
      res.once('close', blobs.hold([sha256]));
      sendPrepared(res, { ...head, body: held.subarray(body.start, body.end + 1) });
      return true;
    }
    artifactBytes(hotBlobs, blobs, sha256, size, body.start, body.end).then((found) => {
      if (!found) {
        sendPrepared(res, preparedError(artifactNotFound(sha256)));
        return;
      }
      res.once('close', found.release);
      if (Buffer.isBuffer(found.bytes)) {
        sendPrepared(res, { ...head, body: found.bytes });
      } else {
        res.writeHead(head.status, head.headers);
        // pipeline destroys the file stream when the device hangs up mid-download.
        pipeline(found.bytes, res, () => {});
      }
    }, (error: unknown) => {
      log.error({ err: error, sha256 }, 'artifact read failed');
      res.destroy();
    });
    return true;
  };
}
