import type { Catalog } from '../catalog/catalog.ts';
import { FOSSIL_DELTA } from '../contract/device-report.ts';
import type { DeviceRegistry } from './device-registry.ts';
import type { PollAnswers } from './poll-answers.ts';

/** Devices looked at per turn of the event loop, so a large fleet never holds up a poll. */
const SLICE = 64;

/**
 * Starts making the deltas devices will want as soon as the catalog changes (a push, a
 * sync): the answer of each device that applies deltas and reports what it runs is worked
 * out, which asks for the delta from that model to its new one (docs/design.md "Deltas").
 * A device then finds it ready at its next poll; a long-polling one is held for it.
 */
export class DeltaWarmup {
  readonly #catalog: Pick<Catalog, 'onChange'>;
  readonly #devices: Pick<DeviceRegistry, 'records'>;
  readonly #answers: Pick<PollAnswers, 'answerFor'>;
  #unsubscribe: (() => void) | undefined;
  #pass: NodeJS.Immediate | undefined;

  constructor(catalog: Pick<Catalog, 'onChange'>, devices: Pick<DeviceRegistry, 'records'>, answers: Pick<PollAnswers, 'answerFor'>) {
    this.#catalog = catalog;
    this.#devices = devices;
    this.#answers = answers;
  }

  async start(): Promise<void> {
    this.#unsubscribe = this.#catalog.onChange(() => this.#warm());
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.();
    clearImmediate(this.#pass);
  }

  /** One pass over the devices; a change during a pass starts it over with the new catalog. */
  #warm(): void {
    clearImmediate(this.#pass);
    const macs = [...this.#devices.records()]
      .filter((device) => device.report?.sha256 && device.capabilities?.patch?.includes(FOSSIL_DELTA))
      .map((device) => device.mac);
    let next = 0;
    const slice = () => {
      for (const end = Math.min(next + SLICE, macs.length); next < end; next++) this.#answers.answerFor(macs[next]!);
      this.#pass = next < macs.length ? setImmediate(slice) : undefined;
    };
    this.#pass = setImmediate(slice);
  }
}
