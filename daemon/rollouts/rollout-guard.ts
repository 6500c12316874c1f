import { inCohort, type EffectiveAssignment } from '../catalog/effective-catalog.ts';
import type { Catalog } from '../catalog/catalog.ts';
import type { Assignment, Rollout, RolloutHalt } from '../catalog/types.ts';
import type { DeviceRegistry } from '../devices/device-registry.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { systemClock, type Clock } from '../clock.ts';

export interface CohortHealth {
  /** Known devices this assignment decides for whose bucket puts them on the new version. */
  cohort: number;
  /**
   * Of those, reporting `failed` since the percentage last changed: failing to install the
   * new version, failing on it after install, or rolled back from it.
   */
  failed: number;
  reasons: Record<string, number>;
  /** haltOnFailures, as a number of devices for this cohort; null when not set. */
  threshold: number | null;
  /** The threshold is reached (and the cohort has minDevices). */
  passed: boolean;
}

const STEP_CHECK_MS = 60_000;
const REASON_LENGTH = 120;

/**
 * Rollouts that stop themselves. After device reports (and every minute), a rollout with
 * `haltOnFailures` whose cohort has reached the threshold is halted: its whole cohort is offered
 * `previous` again (the catalog changes, so held long polls wake). Every minute, rollouts
 * with `steps` go up one step while healthy. Operators halt, resume and promote by hand.
 */
export class RolloutGuard {
  readonly #catalog: Catalog;
  readonly #devices: DeviceRegistry;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #due = new Set<string>();
  #unsubscribe: Array<() => void> = [];
  #scheduled = false;
  #work: Promise<void> = Promise.resolve();

  constructor(catalog: Catalog, devices: DeviceRegistry, metrics: Metrics, log: Logger, clock: Clock = systemClock) {
    this.#catalog = catalog;
    this.#devices = devices;
    this.#metrics = metrics;
    this.#log = log;
    this.#clock = clock;
  }

  async start(): Promise<void> {
    this.#unsubscribe = [
      // Any report may tip the balance: a failure, or a device that completes a cohort of minDevices.
      this.#devices.onReport(({ mac }) => {
        const assignment = this.#catalog.current.assignmentFor(mac);
        if (!assignment?.rollout?.haltOnFailures || assignment.rollout.halted || assignment.layer !== 'local') return;
        this.#due.add(assignment.selector);
        this.#schedule();
      }),
      this.#clock.every(STEP_CHECK_MS, () => this.#queued(async () => {
        // Devices also join a cohort by polling: judge every guarded rollout, then step.
        for (const assignment of this.#catalog.current.assignments.values()) {
          if (assignment.rollout?.haltOnFailures) await this.#judge(assignment.selector);
        }
        await this.step();
      })),
    ];
  }

  async stop(): Promise<void> {
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    this.#unsubscribe = [];
    await this.#work;
  }

  /** Steps and judgements run one at a time, and errors are logged, not thrown. */
  #queued(work: () => Promise<void>): Promise<void> {
    this.#work = this.#work.then(work).catch((error: unknown) => this.#log.error({ err: error }, 'could not update a rollout'));
    return this.#work;
  }

  /** A burst of reports is judged once, after it. */
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      const selectors = [...this.#due];
      this.#due.clear();
      void this.#queued(async () => {
        for (const selector of selectors) await this.#judge(selector);
      });
    });
  }

  health(assignment: Assignment): CohortHealth {
    const catalog = this.#catalog.current;
    const rollout = assignment.rollout;
    const target = catalog.resolveRef(assignment);
    const health: CohortHealth = { cohort: 0, failed: 0, reasons: {}, threshold: null, passed: false };
    if (!rollout || !target) return health;
    const since = rollout.percentSince ?? assignment.updatedAt;
    for (const device of this.#devices.records()) {
      if (!catalog.decidesFor(assignment.selector, device.mac) || !inCohort(device.mac, target, rollout.percent)) continue;
      health.cohort++;
      const report = device.report;
      if (report?.state !== 'failed' || report.at < since) continue;
      health.failed++;
      const reason = (report.error ?? 'failed without an error message').slice(0, REASON_LENGTH);
      health.reasons[reason] = (health.reasons[reason] ?? 0) + 1;
    }
    const limit = rollout.haltOnFailures;
    if (limit !== undefined && limit !== null) {
      health.threshold = typeof limit === 'number' ? limit : Math.max(1, Math.ceil(Number(limit.slice(0, -1)) * health.cohort / 100));
      health.passed = health.cohort >= (rollout.minDevices ?? 1) && health.failed >= health.threshold;
    }
    return health;
  }

  async #judge(selector: string): Promise<void> {
    const assignment = this.#catalog.current.assignments.get(selector);
    if (!assignment?.rollout || assignment.rollout.halted || assignment.layer !== 'local') return;
    const health = this.health(assignment);
    if (!health.passed) return;
    await this.halt(selector, 'failures');
  }

  halt(selector: string, by: RolloutHalt['by']): Promise<Assignment | null> {
    let halt: RolloutHalt | undefined;
    return this.#catalog.updateRollout(selector, (rollout, assignment) => {
      if (rollout.halted) return null;
      const health = this.health(assignment);
      halt = { at: this.#clock.now().toISOString(), by, failed: health.failed, cohort: health.cohort, reasons: health.reasons };
      return { ...rollout, halted: halt };
    }).then((updated) => {
      if (updated && halt) {
        this.#metrics.rolloutHalts.inc({ selector, by });
        this.#log.warn({ selector, model: updated.model, version: updated.version, previous: updated.rollout?.previous, ...halt },
          by === 'failures' ? 'rollout halted: failures passed haltOnFailures; its cohort is offered previous' : 'rollout halted by an operator; its cohort is offered previous');
      }
      return updated;
    });
  }

  async resume(selector: string): Promise<Assignment | null> {
    const updated = await this.#catalog.updateRollout(selector, (rollout) => {
      if (!rollout.halted) return null;
      // Failures before the resume are not held against it again.
      return { ...rollout, halted: null, percentSince: this.#clock.now().toISOString() };
    });
    if (updated) this.#log.info({ selector }, 'rollout resumed');
    return updated;
  }

  async promote(selector: string): Promise<Assignment | null> {
    const updated = await this.#catalog.updateRollout(selector, (rollout) => ({
      ...rollout, percent: 100, halted: null, percentSince: this.#clock.now().toISOString(),
    }));
    if (updated) this.#log.info({ selector }, 'rollout promoted to 100 %');
    return updated;
  }

  /** Raises every healthy rollout with `steps` whose step time has come, by one step. */
  async step(): Promise<void> {
    const now = this.#clock.now();
    for (const assignment of this.#catalog.current.assignments.values()) {
      const next = this.#nextStep(assignment, now);
      if (next === null) continue;
      const updated = await this.#catalog.updateRollout(assignment.selector, (rollout) =>
        rollout.halted || rollout.percent >= next ? null : { ...rollout, percent: next, percentSince: now.toISOString() });
      if (updated) this.#log.info({ selector: assignment.selector, percent: next }, 'rollout stepped up');
    }
  }

  #nextStep(assignment: EffectiveAssignment, now: Date): number | null {
    const rollout: Rollout | null = assignment.rollout;
    if (!rollout?.steps || !rollout.stepAfterMinutes || rollout.halted || assignment.layer !== 'local') return null;
    const next = rollout.steps.find((percent) => percent > rollout.percent);
    if (next === undefined) return null;
    const since = Date.parse(rollout.percentSince ?? assignment.updatedAt);
    if (now.getTime() - since < rollout.stepAfterMinutes * 60_000) return null;
    const health = this.health(assignment);
    const healthy = health.threshold === null ? health.failed === 0 : health.failed < health.threshold;
    return healthy ? next : null;
  }
}
