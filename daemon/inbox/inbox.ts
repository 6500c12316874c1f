import { createHash } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, mkdir, open, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Admission } from '../admission/admission.ts';
import type { Catalog } from '../catalog/catalog.ts';
import type { Clock } from '../clock.ts';
import { parseSelector, selectorKey } from '../contract/identifiers.ts';
import { isModelferryError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { FILED, classify, splitStem } from './drop-names.ts';
import { refusalText } from './refusal-text.ts';
import { SIDECAR_MAX_BYTES, parseSidecar, type Sidecar } from './sidecar.ts';

export interface InboxOptions {
  dir: string;
  /** A file is complete once its size has not changed for this long (writers in place). */
  settleSeconds: number;
  /** How often to look whether the folder appeared, vanished or was mounted over. */
  checkSeconds: number;
}

/** A drop the inbox refuses: filed in rejected/ with this sentence. */
class Refusal extends Error {}

/**
 * The drop folder (docs/drop-folder.md): `name@version.pte`, or `stem.pte` with a
 * `stem.json` sidecar, copied in by scp, rsync or a person with a USB stick. A file is
 * taken once it is complete: temporary names are ignored until renamed, in-place writers
 * are waited out until the size settles. Each drop is admitted the way an HTTP push is
 * (admission), then moves to accepted/ or, with `<file>.error.txt`, to rejected/. Nothing is ever
 * read through a symbolic link, from a file that is not a regular file, or written outside
 * the folder.
 */
export class Inbox {
  readonly #options: InboxOptions;
  readonly #admission: Admission;
  readonly #catalog: Catalog;
  readonly #log: Logger;
  readonly #clock: Clock;
  #watcher: FSWatcher | undefined;
  #watched: { dev: number; ino: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Names whose size and time have settled, still in the folder. */
  readonly #complete = new Set<string>();
  /** Names being watched until they settle. */
  readonly #settling = new Map<string, NodeJS.Timeout>();
  /** Drops are taken one at a time, in arrival order. */
  #queue: Promise<void> = Promise.resolve();
  #stopping = false;
  /** Stems already logged as waiting for their sidecar, so a retry does not log again. */
  readonly #waiting = new Set<string>();

  constructor(options: InboxOptions, parts: { admission: Admission; catalog: Catalog; log: Logger; clock: Clock }) {
    this.#options = options;
    this.#admission = parts.admission;
    this.#catalog = parts.catalog;
    this.#log = parts.log.child({ part: 'inbox' });
    this.#clock = parts.clock;
  }

  async start(): Promise<void> {
    this.#stopping = false;
    await this.#check();
    this.#timer = setInterval(() => void this.#check(), this.#options.checkSeconds * 1000);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#timer);
    await this.#closeWatcher();
    await this.#queue;
  }

  /**
   * Watches the folder when it exists, and watches it again when it is replaced (a USB
   * stick mounted over it changes its device and inode; inotify would keep watching the
   * folder underneath).
   */
  async #check(): Promise<void> {
    if (this.#stopping) return;
    let info: Stats | undefined;
    try {
      info = await stat(this.#options.dir);
      if (!info.isDirectory()) info = undefined;
    } catch {
      info = undefined;
    }
    const same = info && this.#watched && info.dev === this.#watched.dev && info.ino === this.#watched.ino;
    if (same) return;
    if (this.#watcher) {
      this.#log.info({ dir: this.#options.dir }, info ? 'inbox folder replaced (mounted?); watching the new one' : 'inbox folder gone (unmounted?); waiting for it');
      await this.#closeWatcher();
    }
    if (!info || this.#stopping) return;
    this.#watched = { dev: info.dev, ino: info.ino };
    this.#open();
  }

  #open(): void {
    const dir = this.#options.dir;
    const settleMs = this.#options.settleSeconds * 1000;
    // chokidar's awaitWriteFinish does not apply to the files found by its initial scan, so
    // a copy still running when the gateway (re)starts would be taken half-written: every
    // file is waited out here instead (settle()).
    const watcher = watch(dir, {
      depth: 0,
      ignoreInitial: false,
      followSymlinks: false,
      ignored: (file) => {
        const relative = path.relative(dir, file);
        return relative !== '' && (relative.includes(path.sep) || FILED.has(relative) || classify(relative).kind === 'temporary');
      },
    });
    const arrived = (file: string) => {
      const name = path.relative(dir, file);
      if (name === '' || name.includes(path.sep)) return;
      this.#complete.delete(name);
      this.#settle(name, settleMs);
    };
    watcher.on('add', arrived);
    watcher.on('change', arrived);
    watcher.on('addDir', arrived);
    watcher.on('unlink', (file) => this.#complete.delete(path.relative(dir, file)));
    watcher.on('error', (error) => this.#log.error({ err: error, dir }, 'inbox watcher error'));
    watcher.on('ready', () => this.#log.info({ dir }, 'inbox watching'));
    this.#watcher = watcher;
  }

  /**
   * Takes `name` once its size and modification time have not changed for `settleMs`
   * (looked at a few times in between): a writer in place (scp, cp, a file manager) that
   * is still copying keeps changing one or the other.
   */
  #settle(name: string, settleMs: number): void {
    if (this.#settling.has(name)) return;
    const interval = Math.max(50, Math.min(500, settleMs / 4));
    let seen = '';
    let since = this.#clock.now().getTime();
    const look = async () => {
      if (this.#stopping) return;
      const info = await lstatOrNull(this.#in(name)).catch(() => null);
      if (!info) {
        this.#settling.delete(name);
        return;
      }
      const now = `${info.size}:${info.mtimeMs}:${info.ino}`;
      if (now !== seen) {
        seen = now;
        since = this.#clock.now().getTime();
      } else if (this.#clock.now().getTime() - since >= settleMs) {
        this.#settling.delete(name);
        this.#complete.add(name);
        this.#enqueue(name);
        return;
      }
      this.#settling.set(name, setTimeout(() => void look(), interval));
    };
    this.#settling.set(name, setTimeout(() => void look(), 0));
  }

  async #closeWatcher(): Promise<void> {
    const watcher = this.#watcher;
    this.#watcher = undefined;
    this.#watched = undefined;
    for (const timer of this.#settling.values()) clearTimeout(timer);
    this.#settling.clear();
    this.#complete.clear();
    await watcher?.close();
  }

  #enqueue(name: string): void {
    this.#queue = this.#queue.then(() => this.#process(name)).catch((error: unknown) => {
      this.#log.error({ err: error, file: name }, 'inbox could not handle a file');
    });
  }

  async #process(name: string): Promise<void> {
    if (this.#stopping) return;
    const drop = classify(name);
    if (drop.kind === 'temporary') return;
    if (drop.kind === 'other') {
      // Foreign files (a USB stick's own) are left alone, unless they pretend to be a drop.
      return;
    }
    const program = `${drop.stem}.pte`;
    const sidecar = `${drop.stem}.json`;
    const [programInfo, sidecarInfo] = await Promise.all([lstatOrNull(this.#in(program)), lstatOrNull(this.#in(sidecar))]);
    if (!programInfo) {
      // A lone sidecar waits for its program.
      return;
    }
    if (sidecarInfo && !this.#complete.has(sidecar)) return; // taken when the sidecar is complete
    if (!this.#complete.has(program)) return; // taken when the program is complete
    if (!sidecarInfo && !splitStem(drop.stem)) {
      if (!this.#waiting.has(drop.stem)) {
        this.#waiting.add(drop.stem);
        this.#log.info({ file: program }, `inbox: ${program} waits for ${sidecar} (its name is not name@version)`);
      }
      return;
    }
    this.#waiting.delete(drop.stem);
    await this.#take(program, programInfo, sidecarInfo ? sidecar : undefined, sidecarInfo ?? undefined);
  }

  async #take(program: string, programInfo: Stats, sidecarName: string | undefined, sidecarInfo: Stats | undefined): Promise<void> {
    const names = sidecarName ? [program, sidecarName] : [program];
    let filed: Folders;
    try {
      filed = await this.#folders();
    } catch (error) {
      this.#log.error({ err: error, dir: this.#options.dir }, `inbox: ${(error as Error).message}; drops stay where they are until this is fixed`);
      return;
    }
    let outcome: Outcome;
    try {
      outcome = await this.#ingest(program, programInfo, sidecarName, sidecarInfo);
    } catch (error) {
      const text = error instanceof Refusal ? error.message : refusalText(error, this.#admission.maxBytes);
      const code = isModelferryError(error) ? error.code : error instanceof Refusal ? 'refused' : 'internal';
      if (code === 'internal') this.#log.error({ err: error, file: program }, 'inbox: unexpected failure');
      await this.#file(filed.rejected, names, text);
      this.#log.warn({ file: program, code, reason: text }, 'inbox: drop refused');
      return;
    }
    await this.#file(filed.accepted, names);
    this.#log.info({ file: program, ...outcome }, outcome.created ? 'inbox: model stored' : 'inbox: model was already stored');
  }

  async #ingest(program: string, programInfo: Stats, sidecarName: string | undefined, sidecarInfo: Stats | undefined): Promise<Outcome> {
    checkRegular(program, programInfo);
    let meta: Sidecar | undefined;
    if (sidecarName && sidecarInfo) {
      checkRegular(sidecarName, sidecarInfo);
      if (sidecarInfo.size > SIDECAR_MAX_BYTES) throw new Refusal(`${sidecarName} is ${sidecarInfo.size} bytes; a sidecar is a few lines of JSON (at most ${SIDECAR_MAX_BYTES} bytes).`);
      const text = await readRegular(this.#in(sidecarName), sidecarInfo, (handle) => handle.readFile('utf8'));
      try {
        meta = parseSidecar(text);
      } catch (error) {
        throw new Refusal(`${sidecarName} is not a usable sidecar: ${(error as Error).message}.`);
      }
    }
    const claimed = meta ?? splitStem(program.slice(0, -'.pte'.length))!;
    const selector = meta?.assign === undefined ? null : selectorKey(parseSelector(meta.assign));
    const candidate = {
      name: claimed.name,
      version: claimed.version,
      sha256: meta?.sha256 ?? null,
      size: programInfo.size,
      claim: { signature: meta?.signature ?? null, keyId: meta?.keyId ?? null, seq: meta?.signatureSeq ?? null },
    };
    const { created, record } = await this.#admission.admit([candidate], this.#admission.streamed({
      client: 'inbox',
      size: programInfo.size,
      read: (receive) => readRegular(this.#in(program), programInfo, (handle) => receive(handle.createReadStream({ autoClose: false }))),
    }));
    if (selector !== null) {
      await this.#catalog.setAssignment({ selector, model: record.name, version: record.version, rollout: null, updatedAt: this.#clock.now().toISOString() });
      this.#log.info({ selector, model: record.name, version: record.version, client: 'inbox' }, 'assignment set');
    }
    return { model: record.name, version: record.version, sha256: record.sha256, created, assigned: selector };
  }

  /** accepted/ and rejected/, created when missing; refused when something else holds the name. */
  async #folders(): Promise<Folders> {
    const result: Partial<Folders> = {};
    for (const name of ['accepted', 'rejected'] as const) {
      const dir = this.#in(name);
      let info = await lstatOrNull(dir);
      if (!info) {
        await mkdir(dir).catch((error: NodeJS.ErrnoException) => { if (error.code !== 'EEXIST') throw error; });
        info = await lstat(dir);
      }
      // A symbolic link here would file drops wherever it points.
      if (!info.isDirectory()) throw new Error(`${dir} is not a folder (a ${kindOf(info)}); remove it so the inbox can file drops`);
      result[name] = dir;
    }
    return result as Folders;
  }

  /** Moves `names` into `folder` under a time-stamped name; a refusal gets its .error.txt. */
  async #file(folder: string, names: string[], refusal?: string): Promise<void> {
    const now = this.#clock.now();
    const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
    for (const name of names) {
      this.#complete.delete(name);
      const target = await freeName(folder, `${stamp}-${shorten(name)}`);
      try {
        await rename(this.#in(name), target);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    if (refusal !== undefined) {
      const when = now.toISOString();
      const text = `${names.join(' and ')} ${names.length > 1 ? 'were' : 'was'} refused by the gateway at ${when}.\n\n${refusal}\n`;
      await writeFile(await freeName(folder, `${stamp}-${shorten(names[0]!)}.error.txt`), text, { flag: 'wx', mode: 0o644 });
    }
  }

  #in(name: string): string {
    return path.join(this.#options.dir, name);
  }
}

interface Outcome {
  model: string;
  version: string;
  sha256: string;
  created: boolean;
  assigned: string | null;
}

interface Folders {
  accepted: string;
  rejected: string;
}

async function lstatOrNull(file: string): Promise<Stats | null> {
  try {
    return await lstat(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

function kindOf(info: Stats): string {
  if (info.isSymbolicLink()) return 'symbolic link';
  if (info.isDirectory()) return 'folder';
  if (info.isFIFO()) return 'named pipe';
  if (info.isSocket()) return 'socket';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'device';
  return 'file';
}

/** Only plain files with one name are read: no links out, no devices, no pipes. */
function checkRegular(name: string, info: Stats): void {
  if (info.isSymbolicLink()) throw new Refusal(`${name} is a symbolic link; the gateway only takes the file itself. Copy the real file into the inbox (scp and rsync do unless told to keep links).`);
  if (info.isDirectory()) throw new Refusal(`${name} is a folder, not a file; copy the .pte file itself into the inbox.`);
  if (!info.isFile()) throw new Refusal(`${name} is a ${kindOf(info)}, not a file; copy the .pte file itself into the inbox.`);
  if (info.nlink > 1) throw new Refusal(`${name} has other names on this disk (a hard link); copy the file itself into the inbox instead of linking it.`);
}

/**
 * Opens without following links and without blocking on a pipe, and checks that what was
 * opened is the file that was looked at (nothing was swapped in between).
 */
async function readRegular<T>(file: string, seen: Stats, read: (handle: import('node:fs/promises').FileHandle) => Promise<T>): Promise<T> {
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const info = await handle.stat();
    if (!info.isFile() || info.ino !== seen.ino || info.dev !== seen.dev) {
      throw new Refusal(`${path.basename(file)} changed while the gateway was reading it; copy it again.`);
    }
    return await read(handle);
  } finally {
    await handle.close();
  }
}

/** File names stay within the 255 bytes a file system allows, with the stamp added. */
function shorten(name: string): string {
  if (Buffer.byteLength(name) <= 180) return name;
  return `${name.slice(0, 100)}…${createHash('sha256').update(name).digest('hex').slice(0, 16)}`;
}

async function freeName(folder: string, name: string): Promise<string> {
  for (let i = 0; ; i++) {
    const candidate = path.join(folder, i === 0 ? name : `${name}.${i}`);
    if (!(await lstatOrNull(candidate))) return candidate;
  }
}
