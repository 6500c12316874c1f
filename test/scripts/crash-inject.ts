// Crash injection: a gateway process killed with SIGKILL at random moments while pushes,
// assignments, deletes, upstream syncs (from nginx serving a store that is published to
// meanwhile) and blob garbage collections (grace 0, so each one deletes the blobs of the
// models deleted since) are in flight, restarted on the same folders, and checked:
//   - every catalog entry has its blob, with the right sha256;
//   - nothing acknowledged (a 2xx) is lost, and nothing acknowledged as deleted is back;
//   - an operation cut by the kill is either wholly done or not at all;
//   - no temporary file is left after the restart;
//   - each device's answer is the one before or after the cut assignment, and the device
//     the store assigns gets the version of the last acknowledged sync or a newer one.
// Rounds take turns: a kill at a random time, one timed into a sync, one into a GC.
//
//   node --import tsx test/scripts/crash-inject.ts --rounds 100
//
// test/daemon/crash-inject.test.ts runs a few rounds.
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { publish } from '../../daemon/publish/publish.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon-process.ts';
import { Teardowns, tempDir, type HasTeardown } from '../helpers/harness.ts';
import { startNginx } from '../helpers/nginx.ts';
import { makeProgram, sha256 } from '../helpers/programs.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';

const MACS = ['02:00:00:00:0c:01', '02:00:00:00:0c:02', '02:00:00:00:0c:03'];
/** The device the upstream store assigns each newly published version to. */
const UPSTREAM_MAC = '02:00:00:00:0c:10';

interface Known {
  /** `name@version` -> sha256 of what was acknowledged, or null once its delete was acknowledged. */
  models: Map<string, string | null>;
  /** MAC -> version acknowledged for it. */
  assignments: Map<string, string>;
  /** The last version published to the store (`up@<n>`), and the one the last acknowledged sync applied. */
  published: number;
  synced: number;
}

/** A store folder served by nginx, the way a site hosts one. */
interface Store {
  dir: string;
  url: string;
}

type Kind = 'sync' | 'gc';

/** How a round's kill is placed, and what was under way when it came. */
interface Cut {
  killed: boolean;
  /** `sync` / `gc`: the kill lands a moment after the next such request is sent. */
  aim: Kind | 'time';
  inFlight: Record<Kind, number>;
  /** Called by a worker as it sends a request of `kind`. */
  started(kind: Kind): void;
}

interface Uncertain {
  models: Map<string, Set<string | null>>;
  assignments: Map<string, Set<string>>;
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function json(daemon: RunningDaemon, pathname: string): Promise<any> {
  return (await daemon.fetch(pathname, { token: ALL_TOKEN })).json();
}

async function tempFiles(daemon: RunningDaemon): Promise<string[]> {
  const found: string[] = [];
  for (const dir of [path.join(daemon.state, 'blobs', 'tmp'), path.join(daemon.cache, 'tmp')]) {
    found.push(...(await readdir(dir).catch(() => [] as string[])).map((name) => path.join(dir, name)));
  }
  return found;
}

/** The checks after a restart; throws naming what is wrong. */
async function check(daemon: RunningDaemon, known: Known, uncertain: Uncertain): Promise<void> {
  const left = await tempFiles(daemon);
  if (left.length > 0) throw new Error(`temporary files left after restart: ${left.join(', ')}`);
  const { models } = await json(daemon, '/v1/models') as { models: Array<{ name: string; version: string; sha256: string }> };
  const present = new Map(models.map((m) => [`${m.name}@${m.version}`, m.sha256]));
  for (const model of models) {
    const artifact = await daemon.fetch(`/v1/artifacts/${model.sha256}`);
    if (artifact.status !== 200) throw new Error(`${model.name}@${model.version}: artifact ${model.sha256} answered ${artifact.status}`);
    const digest = sha256(Buffer.from(await artifact.arrayBuffer()));
    if (digest !== model.sha256) throw new Error(`${model.name}@${model.version}: blob sha256 ${digest}, entry ${model.sha256}`);
  }
  for (const [key, sha] of known.models) {
    const allowed = uncertain.models.get(key) ?? new Set([sha]);
    allowed.add(sha);
    const actual = present.get(key) ?? null;
    if (!allowed.has(actual)) throw new Error(`${key}: found ${actual}, acknowledged ${sha}${uncertain.models.has(key) ? ' (or the cut operation)' : ''}`);
  }
  for (const [key, outcomes] of uncertain.models) {
    if (known.models.has(key)) continue;
    const actual = present.get(key) ?? null;
    if (!outcomes.has(actual) && actual !== null) throw new Error(`${key}: found ${actual}, which no operation wrote`);
  }
  const { assignments } = await json(daemon, '/v1/assignments') as { assignments: Array<{ selector: string; version: string }> };
  const assigned = new Map(assignments.map((a) => [a.selector, a.version]));
  for (const mac of MACS) {
    const allowed = new Set(uncertain.assignments.get(mac) ?? []);
    if (known.assignments.has(mac)) allowed.add(known.assignments.get(mac)!);
    const actual = assigned.get(mac);
    if (allowed.size === 0 && actual === undefined) continue;
    if (actual === undefined || !allowed.has(actual)) throw new Error(`assignment ${mac}: found ${actual}, expected one of ${[...allowed].join(', ')}`);
    const poll = await daemon.fetch(`/v1/devices/${mac}/model`);
    const body = await poll.json() as { model?: { version: string } };
    if (poll.status !== 200 || body.model?.version !== actual) throw new Error(`device ${mac} answered ${poll.status} ${JSON.stringify(body)} with ${actual} assigned`);
    // What the restart shows is now what holds.
    known.assignments.set(mac, actual);
  }
  if (known.published > 0) {
    const poll = await daemon.fetch(`/v1/devices/${UPSTREAM_MAC}/model`);
    const body = await poll.json() as { model?: { name: string; version: string; sha256: string; url: string } };
    const version = Number(body.model?.version ?? 0);
    // Before any acknowledged sync the device may have nothing yet (the sync at start may still run).
    if (!(poll.status === 404 && known.synced === 0) && (poll.status !== 200 || body.model?.name !== 'up' || version < known.synced || version > known.published)) {
      throw new Error(`device ${UPSTREAM_MAC} answered ${poll.status} ${JSON.stringify(body)}; the last acknowledged sync applied up@${known.synced}, up@${known.published} is the newest published`);
    }
    if (poll.status === 200) {
      const artifact = await daemon.fetch(body.model!.url);
      const digest = sha256(Buffer.from(await artifact.arrayBuffer()));
      if (artifact.status !== 200 || digest !== body.model!.sha256) throw new Error(`up@${version}: artifact answered ${artifact.status} with sha256 ${digest}, not ${body.model!.sha256}`);
      known.synced = version;
    }
  }
  for (const [key] of uncertain.models) known.models.set(key, present.get(key) ?? null);
  uncertain.models.clear();
  uncertain.assignments.clear();
}

/** Random operations until the kill; each one's outcome goes into known or uncertain. */
async function workload(daemon: RunningDaemon, known: Known, uncertain: Uncertain, round: number, killAt: number, cut: Cut, store: Store): Promise<void> {
  let n = 0;
  const running = () => Date.now() < killAt + 200 && !cut.killed;
  // Publishes now and then, and syncs: no other worker publishes, so an acknowledged sync
  // applied the newest version published before it was sent.
  const syncer = async () => {
    while (running()) {
      try {
        if (Math.random() < 0.6) await publishNext(store, known);
        const published = known.published;
        cut.started('sync');
        cut.inFlight.sync++;
        const response = await daemon.fetch('/v1/sync', { method: 'POST', token: ALL_TOKEN }).finally(() => cut.inFlight.sync--);
        const body = await response.text();
        if (response.status !== 200) throw new Error(`sync: ${response.status} ${body}`);
        known.synced = published;
      } catch (error) {
        if (!cut.killed) throw error;
        return;
      }
    }
  };
  const collector = async () => {
    while (running()) {
      try {
        cut.started('gc');
        cut.inFlight.gc++;
        const response = await daemon.fetch('/v1/cache/gc', { method: 'POST', token: ALL_TOKEN }).finally(() => cut.inFlight.gc--);
        const body = await response.text();
        if (response.status !== 200) throw new Error(`gc: ${response.status} ${body}`);
        await delay(Math.random() * 50);
      } catch (error) {
        if (!cut.killed) throw error;
        return;
      }
    }
  };
  const worker = async (w: number) => {
    while (running()) {
      const pick = Math.random();
      const live = [...known.models].filter(([, sha]) => sha !== null).map(([key]) => key);
      const assignedVersions = new Set(known.assignments.values());
      try {
        if (pick < 0.5 || live.length < 2) {
          const key = `kws@r${round}.${w}.${n++}`;
          const bytes = makeProgram(20_000 + Math.floor(Math.random() * 2_000_000));
          const digest = sha256(bytes);
          uncertain.models.set(key, new Set([digest, null]));
          const response = await daemon.fetch(`/v1/models/kws/${key.split('@')[1]}`, { method: 'PUT', body: bytes, token: ALL_TOKEN });
          await response.arrayBuffer();
          // Over artifacts.maxConcurrentPushes: refused before its body was read, nothing stored.
          if (response.status === 503) {
            uncertain.models.delete(key);
            continue;
          }
          if (response.status !== 201) throw new Error(`push ${key}: ${response.status}`);
          known.models.set(key, digest);
          uncertain.models.delete(key);
        } else if (pick < 0.8) {
          const mac = MACS[Math.floor(Math.random() * MACS.length)]!;
          const version = live[Math.floor(Math.random() * live.length)]!.split('@')[1]!;
          const outcomes = uncertain.assignments.get(mac) ?? new Set<string>();
          outcomes.add(version);
          uncertain.assignments.set(mac, outcomes);
          const response = await daemon.fetch(`/v1/assignments/${mac}`, { method: 'PUT', token: ALL_TOKEN, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'kws', version }) });
          await response.arrayBuffer();
          // Another worker deleted that version meanwhile: refused, nothing changed.
          if (response.status === 404) {
            outcomes.delete(version);
            if (outcomes.size === 0) uncertain.assignments.delete(mac);
            continue;
          }
          if (response.status >= 300) throw new Error(`assign ${mac}: ${response.status}`);
          known.assignments.set(mac, version);
          outcomes.delete(version);
          if (outcomes.size === 0) uncertain.assignments.delete(mac);
        } else {
          const candidates = live.filter((key) => !assignedVersions.has(key.split('@')[1]!) && ![...uncertain.assignments.values()].some((s) => s.has(key.split('@')[1]!)));
          const key = candidates[Math.floor(Math.random() * candidates.length)];
          if (!key) continue;
          uncertain.models.set(key, new Set([known.models.get(key)!, null]));
          const response = await daemon.fetch(`/v1/models/kws/${key.split('@')[1]}`, { method: 'DELETE', token: ALL_TOKEN });
          await response.arrayBuffer();
          // 409: assigned meanwhile; 404: another worker deleted it first. Either way this
          // delete changed nothing.
          if (response.status === 409 || response.status === 404) {
            if (response.status === 409) uncertain.models.delete(key);
            continue;
          }
          if (response.status !== 204) throw new Error(`delete ${key}: ${response.status}`);
          known.models.set(key, null);
          uncertain.models.delete(key);
        }
      } catch (error) {
        // Cut by the kill: the operation stays in `uncertain`. Anything else is a failure.
        if (!cut.killed) throw error;
        return;
      }
    }
  };
  await Promise.all([...[0, 1, 2].map(worker), syncer(), collector()]);
}

/** A new version of `up` in the store, assigned to UPSTREAM_MAC. */
async function publishNext(store: Store, known: Known): Promise<void> {
  const version = known.published + 1;
  const file = path.join(path.dirname(store.dir), `up-${version}.pte`);
  await writeFile(file, makeProgram(50_000 + Math.floor(Math.random() * 1_500_000)));
  await publish({ store: store.dir, file, name: 'up', version: String(version), assign: UPSTREAM_MAC });
  known.published = version;
}

export interface CrashCounts {
  kills: number;
  /** Kills that came while a sync, a GC request was under way. */
  duringSync: number;
  duringGc: number;
}

export async function crashInject(t: HasTeardown, rounds: number, log: (line: string) => void = () => {}): Promise<CrashCounts> {
  const dir = await tempDir(t, 'modelferry-crash-');
  const storeFolder = path.join(dir, 'store');
  await mkdir(storeFolder);
  const nginx = await startNginx(t, storeFolder);
  const store: Store = { dir: storeFolder, url: nginx.url };
  const config = {
    upstream: { url: `${store.url}/manifest.json`, schedule: '0 0 1 1 *', maxRandomDelaySeconds: 0 },
    cache: { gcGraceHours: 0 },
  };
  const known: Known = { models: new Map(), assignments: new Map(), published: 0, synced: 0 };
  const uncertain: Uncertain = { models: new Map(), assignments: new Map() };
  await publishNext(store, known);
  const counts: CrashCounts = { kills: 0, duringSync: 0, duringGc: 0 };
  const aims = ['time', 'sync', 'gc'] as const;
  const daemons: RunningDaemon[] = [];
  // A failed check keeps every run's log, for finding what happened before the kill.
  const checked = async (daemon: RunningDaemon) => {
    daemons.push(daemon);
    try {
      await check(daemon, known, uncertain);
    } catch (error) {
      const file = path.join(os.tmpdir(), `modelferry-crash-inject-${process.pid}.log`);
      await writeFile(file, daemons.map((d, i) => `=== run ${i + 1}\n${d.lines.join('\n')}`).join('\n'));
      throw new Error(`${(error as Error).message} (the daemons' logs are in ${file})`);
    }
  };
  for (let round = 0; round < rounds; round++) {
    const daemon = await startDaemon(t, { dir, config });
    await checked(daemon);
    let kill!: () => void;
    const killNow = new Promise<void>((resolve) => { kill = resolve; });
    const cut: Cut = {
      killed: false,
      aim: aims[round % aims.length]!,
      inFlight: { sync: 0, gc: 0 },
      started(kind) {
        // A sync takes tens of milliseconds here, a GC a few: land inside one.
        if (kind === this.aim && !this.killed && Date.now() >= earliest) setTimeout(kill, Math.random() * (kind === 'sync' ? 40 : 4));
      },
    };
    const earliest = Date.now() + 100 + Math.random() * 500;
    const killAt = Date.now() + 100 + Math.random() * 1500;
    const timer = setTimeout(kill, cut.aim === 'time' ? killAt - Date.now() : 10_000);
    const work = workload(daemon, known, uncertain, round, cut.aim === 'time' ? killAt : Date.now() + 10_000, cut, store);
    await Promise.race([killNow, work]);
    clearTimeout(timer);
    const during = { ...cut.inFlight };
    cut.killed = true;
    await daemon.kill();
    counts.kills++;
    if (during.sync > 0) counts.duringSync++;
    if (during.gc > 0) counts.duringGc++;
    await work;
    const under = (Object.keys(during) as Kind[]).filter((kind) => during[kind] > 0);
    log(`round ${round + 1} (${cut.aim}): killed${under.length > 0 ? ` during ${under.join(' and ')}` : ''}; ${[...known.models.values()].filter((v) => v !== null).length} models acknowledged, up@${known.synced} synced of ${known.published}, ${uncertain.models.size + uncertain.assignments.size} operations cut`);
  }
  const last = await startDaemon(t, { dir, config });
  await checked(last);
  await last.stop();
  return counts;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '100' } } });
  const teardowns = new Teardowns();
  try {
    const { kills, duringSync, duringGc } = await crashInject(teardowns, Number(values.rounds), (line) => console.log(line));
    console.log(`crash-inject: ${kills} kills (${duringSync} during a sync, ${duringGc} during a GC), every restart checked: OK`);
  } finally {
    await teardowns.run();
  }
}
