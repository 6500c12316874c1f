// Crash injection: a gateway process killed with SIGKILL at random moments while pushes,
// assignments and deletes are in flight, restarted on the same folders, and checked:
//   - every catalog entry has its blob, with the right sha256;
//   - nothing acknowledged (a 2xx) is lost, and nothing acknowledged as deleted is back;
//   - an operation cut by the kill is either wholly done or not at all;
//   - no temporary file is left after the restart;
//   - each device's answer is the one before or after the cut assignment.
//
//   node --import tsx test/scripts/crash-inject.ts --rounds 100
//
// test/daemon/crash-inject.test.ts runs a few rounds.
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startDaemon, type RunningDaemon } from '../helpers/daemon-process.ts';
import { Teardowns, tempDir, type HasTeardown } from '../helpers/harness.ts';
import { makeProgram, sha256 } from '../helpers/programs.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';

const MACS = ['02:00:00:00:0c:01', '02:00:00:00:0c:02', '02:00:00:00:0c:03'];

interface Known {
  /** `name@version` -> sha256 of what was acknowledged, or null once its delete was acknowledged. */
  models: Map<string, string | null>;
  /** MAC -> version acknowledged for it. */
  assignments: Map<string, string>;
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
    if (artifact.status !== 200) throw new Error(`${model.name}@${model.version}: artifact answered ${artifact.status}`);
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
  for (const [key] of uncertain.models) known.models.set(key, present.get(key) ?? null);
  uncertain.models.clear();
  uncertain.assignments.clear();
}

/** Random operations until the kill; each one's outcome goes into known or uncertain. */
async function workload(daemon: RunningDaemon, known: Known, uncertain: Uncertain, round: number, killAt: number, cut: { killed: boolean }): Promise<void> {
  let n = 0;
  const worker = async (w: number) => {
    while (Date.now() < killAt + 200) {
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
  await Promise.all([0, 1, 2].map(worker));
}

export async function crashInject(t: HasTeardown, rounds: number, log: (line: string) => void = () => {}): Promise<number> {
  const dir = await tempDir(t, 'modelferry-crash-');
  const known: Known = { models: new Map(), assignments: new Map() };
  const uncertain: Uncertain = { models: new Map(), assignments: new Map() };
  let kills = 0;
  for (let round = 0; round < rounds; round++) {
    const daemon = await startDaemon(t, { dir });
    await check(daemon, known, uncertain);
    const killAt = Date.now() + 100 + Math.random() * 1500;
    const cut = { killed: false };
    const work = workload(daemon, known, uncertain, round, killAt, cut);
    await delay(Math.max(0, killAt - Date.now()));
    cut.killed = true;
    await daemon.kill();
    kills++;
    await work;
    log(`round ${round + 1}: killed; ${[...known.models.values()].filter((v) => v !== null).length} models acknowledged, ${uncertain.models.size + uncertain.assignments.size} operations cut`);
  }
  const last = await startDaemon(t, { dir });
  await check(last, known, uncertain);
  await last.stop();
  return kills;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '100' } } });
  const teardowns = new Teardowns();
  try {
    const kills = await crashInject(teardowns, Number(values.rounds), (line) => console.log(line));
    console.log(`crash-inject: ${kills} kills, every restart checked: OK`);
  } finally {
    await teardowns.run();
  }
}
