import { createHash } from 'node:crypto';
import type { Catalog } from '../catalog/catalog.ts';
import type { EffectiveCatalog } from '../catalog/effective-catalog.ts';
import { FOSSIL_DELTA } from '../contract/device-report.ts';
import { artifactPath, deltaPath, wireModel, type PollAnswerBody, type PollTiming } from '../contract/model-wire.ts';
import type { DeltaStore } from '../deltas/delta-store.ts';
import type { BlobStore } from '../store/blob-store.ts';
import type { DeviceRegistry } from './device-registry.ts';
import { resolveForDevice, type DeviceResolution } from './device-resolution.ts';

export type PollAnswer =
  /** `deltaPending`: the device could get a delta that is being made; the body has none yet. */
  | { kind: 'model'; body: Buffer; etag: string; resolution: DeviceResolution; deltaPending: boolean }
  | { kind: 'none'; reason: string };

export interface LongPollLimits {
  /** Long polls held at once, in total. */
  maxLongPolls: number;
  /** Long polls held at once for one client address. */
  maxLongPollsPerAddress: number;
}

/** Deltas offered beside full artifacts (docs/design.md "Deltas"). */
export interface DeltaOffers {
  store: Pick<DeltaStore, 'offer' | 'onChange'>;
  /** deltas.waitSeconds: how long a long poll waits for a delta being made (it reloads live). */
  waitSeconds: () => number;
}

interface Waiter {
  mac: string;
  etag: string;
  address: string;
  done: (answer: PollAnswer | undefined) => void;
  /** Set while its new answer waits for a delta: then it is answered with or without one. */
  deltaTimer?: NodeJS.Timeout;
}

/** A wake-up pass yields to the event loop after this long or this many answered waiters,
 * so a change with thousands of long polls waiting never holds other requests up for more
 * than a few milliseconds (answering each released poll costs more than checking it). */
const WAKE_SLICE_MS = 2;
const WAKE_SLICE_RELEASES = 4;

/** Past this many devices the memo starts over rather than grow without bound. */
const MEMO_LIMIT = 100_000;

/**
 * The answer to `GET /v1/devices/{mac}/model`, serialized once per device per catalog
 * change and then served from memory: a poll storm costs map lookups, not JSON and hashing.
 * Long polls wait here for the next change that alters their device's answer.
 */
export class PollAnswers {
  readonly #catalog: Catalog;
  readonly #blobs: BlobStore;
  readonly #devices: DeviceRegistry;
  readonly #deltas: DeltaOffers;
  #timing: PollTiming;
  readonly #limits: LongPollLimits;
  readonly #waitingByAddress = new Map<string, number>();
  #waking = false;
  #wakeAgain = false;
  #memo = new Map<string, PollAnswer>();
  #memoFor: EffectiveCatalog | undefined;
  readonly #waiters = new Set<Waiter>();
  #unsubscribe: Array<() => void> = [];
  #stopped = false;

  constructor(catalog: Catalog, blobs: BlobStore, devices: DeviceRegistry, deltas: DeltaOffers, timing: PollTiming, limits: LongPollLimits) {
    this.#catalog = catalog;
    this.#blobs = blobs;
    this.#devices = devices;
    this.#deltas = deltas;
    this.#timing = timing;
    this.#limits = limits;
  }

  async start(): Promise<void> {
    // Answers depend on the catalog and on which blobs are cached (a model whose blob is
    // missing is not offered), so a change to either recomputes them.
    this.#unsubscribe = [
      this.#catalog.onChange(() => this.#wakeWaiters()),
      this.#blobs.onChange(() => this.#refresh()),
      // A delta made (or found not worth it) changes the answers that waited for it.
      this.#deltas.store.onChange(() => this.#refresh()),
      // A device's answer also depends on its capabilities and on what it runs (compatibility).
      this.#devices.onReport(({ mac, offerInputs }) => {
        if (!offerInputs) return;
        this.#memo.delete(mac);
        this.#wakeWaiters(mac);
      }),
    ];
  }

  /** Releases every long poll with "unchanged" so that shutdown does not wait on them. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    this.#unsubscribe = [];
    for (const waiter of this.#waiters) waiter.done(undefined);
    this.#waiters.clear();
  }

  /** True once stop() released the long polls: their answers should close the connection. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /**
   * New poll interval and jitter from a config reload. Answers carry them, so the answers
   * change: held long polls are answered with the new timing, none is dropped.
   */
  setTiming(timing: PollTiming): void {
    this.#timing = timing;
    this.#refresh();
  }

  get waiting(): number {
    return this.#waiters.size;
  }

  #refresh(): void {
    this.#memoFor = undefined;
    this.#wakeWaiters();
  }

  answerFor(mac: string): PollAnswer {
    const catalog = this.#catalog.current;
    if (this.#memoFor !== catalog || this.#memo.size >= MEMO_LIMIT) {
      this.#memo = new Map();
      this.#memoFor = catalog;
    }
    let answer = this.#memo.get(mac);
    if (!answer) {
      answer = this.#compute(catalog, mac);
      this.#memo.set(mac, answer);
    }
    return answer;
  }

  /** True when one more long poll from `address` may be held (see LongPollLimits). */
  mayHold(address: string): boolean {
    return !this.#stopped
      && this.#waiters.size < this.#limits.maxLongPolls
      && (this.#waitingByAddress.get(address) ?? 0) < this.#limits.maxLongPollsPerAddress;
  }

  /** deltas.waitSeconds: how long a poll may wait for a delta being made. */
  get deltaWaitSeconds(): number {
    return this.#deltas.waitSeconds();
  }

  /**
   * Resolves with the new answer once it differs from `etag` (and its delta, when one is
   * being made, is ready or waited for deltas.waitSeconds), or after `timeoutMs` with the
   * new answer if there is one and undefined if not; with undefined at shutdown or when
   * `signal` aborts (the device hung up). Resolves with undefined at once when the limits
   * allow no more long polls (mayHold).
   */
  waitForChange(mac: string, etag: string, address: string, timeoutMs: number, signal: AbortSignal): Promise<PollAnswer | undefined> {
    if (!this.mayHold(address)) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        mac,
        etag,
        address,
        done: (answer) => {
          clearTimeout(timer);
          clearTimeout(waiter.deltaTimer);
          signal.removeEventListener('abort', onAbort);
          if (this.#waiters.delete(waiter)) {
            const left = this.#waitingByAddress.get(address)! - 1;
            if (left === 0) this.#waitingByAddress.delete(address);
            else this.#waitingByAddress.set(address, left);
          }
          resolve(answer);
        },
      };
      const onAbort = () => waiter.done(undefined);
      const timer = setTimeout(() => {
        const answer = this.answerFor(mac);
        waiter.done(answer.kind === 'model' && answer.etag !== etag ? answer : undefined);
      }, timeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.add(waiter);
      this.#waitingByAddress.set(address, (this.#waitingByAddress.get(address) ?? 0) + 1);
    });
  }

  /**
   * Releases the waiters whose answer changed. One device's change (a report) checks only
   * that device's waiters. A catalog change checks every waiter, in slices that yield to the
   * event loop; a change during a pass runs another pass after it, so no waiter misses the
   * latest answer.
   */
  #wakeWaiters(only?: string): void {
    if (only !== undefined) {
      for (const waiter of [...this.#waiters]) {
        if (waiter.mac === only) this.#release(waiter);
      }
      return;
    }
    if (this.#waking) {
      this.#wakeAgain = true;
      return;
    }
    this.#waking = true;
    const pending = [...this.#waiters];
    let next = 0;
    const slice = () => {
      const deadline = performance.now() + WAKE_SLICE_MS;
      let released = 0;
      while (next < pending.length) {
        const waiter = pending[next++]!;
        if (!this.#waiters.has(waiter)) continue;
        if (this.#release(waiter) && ++released >= WAKE_SLICE_RELEASES) break;
        if ((next & 15) === 0 && performance.now() >= deadline) break;
      }
      if (next < pending.length) {
        setImmediate(slice);
        return;
      }
      this.#waking = false;
      if (this.#wakeAgain) {
        this.#wakeAgain = false;
        this.#wakeWaiters();
      }
    };
    slice();
  }

  /**
   * Answers a waiter whose answer changed; true when it did. A new answer whose delta is
   * being made waits for it, up to deltas.waitSeconds, then goes out as it is then (the full
   * artifact, or the delta if it came): a long-polling fleet gets the delta after a push.
   */
  #release(waiter: Waiter): boolean {
    const answer = this.answerFor(waiter.mac);
    if (answer.kind === 'model' && answer.etag === waiter.etag) return false;
    if (answer.kind === 'model' && answer.deltaPending) {
      waiter.deltaTimer ??= setTimeout(() => waiter.done(this.answerFor(waiter.mac)), this.#deltas.waitSeconds() * 1000);
      return false;
    }
    waiter.done(answer);
    return true;
  }

  #compute(catalog: EffectiveCatalog, mac: string): PollAnswer {
    const device = this.#devices.get(mac);
    const resolution = resolveForDevice(catalog, mac, device);
    if (!resolution) return { kind: 'none', reason: `no assignment resolves for ${mac}: none for the device, its group or default` };
    const { model } = resolution;
    if (!model) {
      const why = resolution.compatibility.status === 'incompatible' ? resolution.compatibility.reasons.join('; ') : 'incompatible';
      return { kind: 'none', reason: `${mac} cannot run ${resolution.target.name}@${resolution.target.version} (${why}) and runs nothing else this catalog has; it keeps its current model` };
    }
    if (!this.#blobs.holds(model)) {
      return { kind: 'none', reason: `the model assigned to ${mac} (${model.name}@${model.version}) is not in this gateway's cache` };
    }
    // A delta only to a device that applies them, from the model it reports running.
    const running = device?.report?.sha256;
    const delta = running && device.capabilities?.patch?.includes(FOSSIL_DELTA) ? this.#deltas.store.offer(running, model.sha256) : null;
    const answer: PollAnswerBody = {
      device: mac,
      model: wireModel(model, artifactPath(model.sha256)),
      ...(delta && delta !== 'pending' ? { delta: { from: delta.from, url: deltaPath(delta.from, delta.to), size: delta.size, sha256: delta.sha256 } } : {}),
      poll: this.#timing,
    };
    const body = Buffer.from(JSON.stringify(answer));
    const etag = `"${createHash('sha256').update(body).digest('base64url')}"`;
    return { kind: 'model', body, etag, resolution, deltaPending: delta === 'pending' };
  }
}
