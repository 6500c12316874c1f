import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, open, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CONFIG_MEMBER, MANIFEST_MEMBER, type BackupManifest } from '../backup/backup.ts';
import { listTar, readMember } from '../backup/tar.ts';
import { loadConfig } from '../config/load.ts';
import { option, positional, type Args } from './args.ts';
import { defineCommand } from './command.ts';
import { ClientError, GatewayClient } from './gateway-client.ts';

export const backupCommand = defineCommand({
  name: 'backup',
  summary: 'save a consistent snapshot of a running gateway (config, database, blobs) to a file',
  description: `Saves a consistent snapshot of a running gateway into FILE (a tar, mode 0600: it holds the
config with its tokens): the config file, the whole database (catalog, devices, gateway id)
and every blob the catalog names. Needs a token with the admin scope.`,
  operands: [{ name: 'FILE' }],
  client: true,
  run: (args) => backup(args),
});

export async function backup(args: Args, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const file = positional(args, 0, 'FILE');
  const baseUrl = GatewayClient.fromArgs(args, env).baseUrl;
  const token = option(args, 'token') ?? env.MODELFERRY_TOKEN;
  let response: Response;
  try {
    response = await fetch(`${baseUrl}/v1/backup`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause;
    throw new ClientError('unreachable', 0, `cannot reach the gateway at ${baseUrl}: ${cause?.code ?? (error as Error).message}`);
  }
  if (!response.ok || !response.body) {
    const text = await response.text();
    let detail = text;
    try {
      const { error, message } = JSON.parse(text) as { error?: string; message?: string };
      detail = `${error ?? ''}: ${message ?? ''}`;
    } catch { /* not JSON */ }
    throw new ClientError('http_error', response.status, `${response.status} ${detail}`);
  }
  // Written beside FILE and renamed when complete: FILE is never a partial backup.
  const partial = `${file}.partial-${randomBytes(4).toString('hex')}`;
  try {
    await pipeline(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream), createWriteStream(partial, { mode: 0o600 }));
    const handle = await open(partial, 'r+');
    let manifest: BackupManifest;
    try {
      await handle.sync();
      const members = await listTar(handle);
      const names = new Set(members.map((m) => m.name));
      const manifestMember = members.find((m) => m.name === MANIFEST_MEMBER);
      if (!manifestMember) throw new Error('the gateway sent no backup manifest');
      manifest = JSON.parse((await readMember(handle, manifestMember)).toString('utf8')) as BackupManifest;
      const missing = manifest.blobs.filter((b) => !names.has(`blobs/${b.sha256}`));
      if (missing.length > 0) throw new Error(`the backup lacks ${missing.length} blob(s) its manifest lists`);
    } finally {
      await handle.close();
    }
    await rename(partial, file);
    const bytes = manifest.blobs.reduce((sum, b) => sum + b.size, 0);
    console.log(`backed up gateway ${manifest.gatewayId} to ${file}: ${manifest.entries} database entries, ${manifest.blobs.length} blobs (${bytes} bytes), ${manifest.config ? 'its config file' : 'no config file (it runs on the embedded default)'}`);
    return 0;
  } finally {
    await rm(partial, { force: true });
  }
}

export const restoreCommand = defineCommand({
  name: 'restore',
  summary: 'restore a backup offline, before the gateway starts',
  description: `Restores a backup offline, before the gateway starts (stop it first: it owns the database).
The state directory must be empty or absent, and the config file absent or identical;
--force moves an existing state directory and config file aside (*.before-restore-<time>)
instead of refusing. The config goes to --config (default /etc/modelferry/config.yaml);
the folders come from it, from STATE_DIRECTORY/CACHE_DIRECTORY, or from the flags.`,
  operands: [{ name: 'FILE' }],
  flags: {
    config: { placeholder: 'FILE', help: 'where the backup\'s config file goes (default /etc/modelferry/config.yaml)' },
    'state-dir': { placeholder: 'DIR', help: 'database folder to restore into (paths.state)' },
    'cache-dir': { placeholder: 'DIR', help: 'blob folder to restore into (paths.cache)' },
    force: { kind: 'boolean', help: 'move an existing state folder and config file aside instead of refusing' },
  },
  run: (args) => restore(args),
});

export async function restore(args: Args): Promise<number> {
  const file = positional(args, 0, 'FILE');
  const configTarget = path.resolve(option(args, 'config') ?? '/etc/modelferry/config.yaml');
  // The gateway will run on the backup's config: its paths are the ones to restore into.
  const handle = await open(file, 'r').catch((error: NodeJS.ErrnoException) => {
    throw new Error(`cannot read ${file}: ${error.code ?? error.message}`);
  });
  let configText: Buffer | null = null;
  try {
    const member = (await listTar(handle).catch(() => [])).find((m) => m.name === CONFIG_MEMBER);
    if (member) configText = await readMember(handle, member);
  } finally {
    await handle.close();
  }
  const flags: Record<string, string> = {};
  const stateDir = option(args, 'state-dir');
  const cacheDir = option(args, 'cache-dir');
  if (stateDir !== undefined) flags['paths.state'] = stateDir;
  if (cacheDir !== undefined) flags['paths.cache'] = cacheDir;
  let paths: { state: string; cache: string };
  if (configText) {
    const scratch = await mkdtemp(path.join(os.tmpdir(), 'modelferry-restore-'));
    try {
      await writeFile(path.join(scratch, 'config.yaml'), configText, { mode: 0o600 });
      paths = loadConfig({ file: path.join(scratch, 'config.yaml'), flags }).config.paths;
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  } else {
    paths = loadConfig({ file: undefined, flags }).config.paths;
  }
  // Loaded here only (LevelDB, the blob store), so that other commands start quickly.
  const { restoreBackup } = await import('../backup/restore.ts');
  const result = await restoreBackup({
    file, statePath: paths.state, cachePath: paths.cache, configTarget, force: args.flags.has('force'),
  });
  const { manifest } = result;
  console.log(`restored gateway ${manifest.gatewayId} (backup of ${manifest.createdAt}, modelferry ${manifest.version})`);
  console.log(`  database: ${manifest.entries} entries into ${paths.state}${result.stateMovedTo ? ` (the previous state is in ${result.stateMovedTo})` : ''}`);
  console.log(`  blobs: ${manifest.blobs.length} (${result.blobsWritten} written) into ${path.join(paths.state, 'blobs')}`);
  console.log(`  config: ${result.config.action}${result.config.path ? ` ${result.config.path}` : ''}${result.config.movedTo ? ` (the previous one is ${result.config.movedTo})` : ''}`);
  console.log('start the gateway now (sudo systemctl start modelferry)');
  return 0;
}
