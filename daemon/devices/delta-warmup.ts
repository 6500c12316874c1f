import type { Catalog } from '../catalog/catalog.ts';
import { FOSSIL_DELTA } from '../contract/device-report.ts';
import type { DeltaStore } from '../deltas/delta-store.ts';
import type { DeviceRecord, DeviceRegistry } from './device-registry.ts';
import type { PollAnswers } from './poll-answers.ts';

/** Devices looked at per turn of the event loop, so a large fleet never holds up a poll. */
const SLICE = 64;

/**
 * Starts making the deltas devices will want as soon as the catalog changes (a push, a
 * sync, an assignment), before they ask (docs/design.md "Deltas"):
 * - a new model: from each version of that model devices that apply deltas report running,
 *   so a push assigned later finds its deltas ready;
 * - a changed assignment: the answer of each such device is worked out, which asks for the
 *   delta from what it runs to what it is now offered. A long-polling device is held for it.
 */
export class DeltaWarmup {
  readonly #catalog: Pick<Catalog, 'current' | 'onChange'>;
  readonly #devices: Pick<DeviceRegistry, 'records'>;
  readonly #answers: Pick<PollAnswers, 'answerFor'>;
  readonly #deltas: Pick<DeltaStore, 'offer'>;
  readonly #known = new Set<string>();
  #unsubscribe: (() => void) | undefined;
  #pass: NodeJS.Immediate | undefined;

  constructor(parts: { catalog: Pick<Catalog, 'current' | 'onChange'>; devices: Pick<DeviceRegistry, 'records'>; answers: Pick<PollAnswers, 'answerFor'>; deltas: Pick<DeltaStore, 'offer'> }) {
    this.#catalog = parts.catalog;
    this.#devices = parts.devices;
    this.#answers = parts.answers;
    this.#deltas = parts.deltas;
  }

  async start(): Promise<void> {
    for (const model of this.#catalog.current.models.values()) this.#known.add(model.sha256);
    this.#unsubscribe = this.#catalog.onChange(() => this.#warm());
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.();
    clearImmediate(this.#pass);
  }

  /** One pass over the devices; a change during a pass starts it over with the new catalog. */
  #warm(): void {
    clearImmediate(this.#pass);
    const fresh = [...this.#catalog.current.models.values()].filter((model) => !this.#known.has(model.sha256));
    for (const model of fresh) this.#known.add(model.sha256);
    const appliers = [...this.#devices.records()].filter(appliesDeltas);
    const pairs = new Map<string, [string, string]>();
    for (const model of fresh) {
      for (const device of appliers) {
        const running = device.report!.sha256!;
        if (device.report!.model === model.name && running !== model.sha256) pairs.set(`${running}-${model.sha256}`, [running, model.sha256]);
      }
    }
    for (const [from, to] of pairs.values()) this.#deltas.offer(from, to);
    let next = 0;
    const slice = () => {
      for (const end = Math.min(next + SLICE, appliers.length); next < end; next++) this.#answers.answerFor(appliers[next]!.mac);
      this.#pass = next < appliers.length ? setImmediate(slice) : undefined;
    };
    this.#pass = setImmediate(slice);
  }
}

function appliesDeltas(device: DeviceRecord): boolean {
  return Boolean(device.report?.sha256 && device.capabilities?.patch?.includes(FOSSIL_DELTA));
}
