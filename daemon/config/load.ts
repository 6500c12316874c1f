import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { ConfigError } from '../errors.ts';
import { describeFsError } from '../fs-errors.ts';
import { redactSecrets } from '../log.ts';
import { configSchema, type Config } from './schema.ts';

// Precedence (docs/configuration.md "Where settings come from"): built-in defaults < systemd
// directories < config file < environment < flags. Each leaf remembers where it came from, so
// that a bad value is reported with its source and a person knows which file or variable to
// fix.

export const DEFAULT_CONFIG_FILE = fileURLToPath(new URL('../../config/default.yaml', import.meta.url));
export const SYSTEM_CONFIG_FILE = '/etc/modelferry/config.yaml';
const ENV_PREFIX = 'MODELFERRY_';
/** Variables for the command-line client, not the daemon. */
const CLIENT_ENV = new Set(['MODELFERRY_GATEWAY', 'MODELFERRY_TOKEN']);

export interface ConfigSources {
  /** `--config FILE`; when absent the system file is read if it exists. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Dotted keys from the command line, e.g. `{ 'http.port': '9000' }`. */
  flags?: Record<string, string>;
  /** The flag a person typed for a key (`http.port` → `--port`), for messages. */
  flagNames?: Record<string, string>;
  cwd?: string;
}

export interface LoadedConfig {
  config: Config;
  /** The files that were read, lowest precedence first. */
  files: string[];
  /** Where a key's value came from, as a person would look for it: `flag --port`, a file, `default`. */
  origin(key: string): string;
}

type Tree = Record<string, Record<string, unknown>>;

export function loadConfig(sources: ConfigSources = {}): LoadedConfig {
  const env = sources.env ?? process.env;
  const cwd = sources.cwd ?? process.cwd();
  const defaults = readYamlFile(DEFAULT_CONFIG_FILE) as Tree;
  const merged: Tree = structuredClone(defaults);
  const origin = new Map<string, string>();
  const files = [DEFAULT_CONFIG_FILE];

  const set = (key: string, value: unknown, from: string) => {
    const [section, leaf] = key.split('.') as [string, string];
    (merged[section] ??= {})[leaf] = value;
    origin.set(key, from);
  };

  if (env.STATE_DIRECTORY) set('paths.state', firstPath(env.STATE_DIRECTORY), 'environment STATE_DIRECTORY');
  if (env.CACHE_DIRECTORY) set('paths.cache', firstPath(env.CACHE_DIRECTORY), 'environment CACHE_DIRECTORY');

  const file = sources.file ?? (existsSync(SYSTEM_CONFIG_FILE) ? SYSTEM_CONFIG_FILE : undefined);
  if (file) {
    const content = readYamlFile(path.resolve(cwd, file), sources.file !== undefined ? `--config ${file}` : file);
    if (content !== null && content !== undefined) {
      if (typeof content !== 'object' || Array.isArray(content)) {
        throw new ConfigError(`config: ${file} must hold a mapping of sections (http, paths, ...)`);
      }
      for (const [section, values] of Object.entries(content as Record<string, unknown>)) {
        if (values === null || typeof values !== 'object' || Array.isArray(values)) {
          (merged as Record<string, unknown>)[section] = values;
          origin.set(`${section}.`, file);
          continue;
        }
        for (const [leaf, value] of Object.entries(values)) set(`${section}.${leaf}`, value, file);
      }
    }
    files.push(file);
  }

  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || CLIENT_ENV.has(name) || raw === undefined) continue;
    const key = keyForEnv(defaults, name);
    if (!key) throw new ConfigError(`config: ${name} names no configuration key (see config/default.yaml)`);
    set(key, coerce(defaults, key, raw, `environment ${name}`), `environment ${name}`);
  }

  for (const [key, raw] of Object.entries(sources.flags ?? {})) {
    const flag = sources.flagNames?.[key] ?? `--${key}`;
    if (!isKnownKey(defaults, key)) throw new ConfigError(`config: ${flag} names no configuration key (see config/default.yaml)`);
    set(key, coerce(defaults, key, raw, `flag ${flag}`), `flag ${flag}`);
  }

  // Paths left at their default (null) go to the user's XDG folders: never relative to
  // whatever directory the command happened to be started in (`/` under a supervisor).
  const paths = (merged.paths ??= {});
  if (paths.state === null) set('paths.state', xdgFolder(env, 'XDG_STATE_HOME', '.local/state', 'paths.state'), 'default ($XDG_STATE_HOME/modelferry)');
  if (paths.cache === null) set('paths.cache', xdgFolder(env, 'XDG_CACHE_HOME', '.cache', 'paths.cache'), 'default ($XDG_CACHE_HOME/modelferry)');

  const result = configSchema.safeParse(merged);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        return issue.keys.map((k) => {
          const key = [...issue.path, k].join('.');
          return `unknown key ${key}${describeOrigin(origin, key)}; known keys${issue.path.length ? ` in ${issue.path.join('.')}` : ''}: ${knownKeys(defaults, issue.path)}`;
        }).join('\n  ');
      }
      const key = issue.path.join('.');
      const leafKey = issue.path.slice(0, 2).join('.');
      const value = isSecret(issue.path) ? '<secret>' : JSON.stringify(redactSecrets(valueAt(merged, issue.path)));
      return `${key} = ${value}${describeOrigin(origin, leafKey)}: ${issue.message}`;
    });
    throw new ConfigError(`config is invalid:\n  ${lines.join('\n  ')}`);
  }
  const config = result.data;
  // A relative path in a config file means next to that file, so the file works from any
  // working directory; one typed as a flag or variable means from where it was typed.
  const base = (key: string) => (file && origin.get(key) === file ? path.dirname(path.resolve(cwd, file)) : cwd);
  config.paths.state = path.resolve(base('paths.state'), config.paths.state);
  config.paths.cache = path.resolve(base('paths.cache'), config.paths.cache);
  if (config.inbox.dir !== null) config.inbox.dir = path.resolve(base('inbox.dir'), config.inbox.dir);
  if (config.tls.certFile !== null) config.tls.certFile = path.resolve(base('tls.certFile'), config.tls.certFile);
  if (config.tls.keyFile !== null) config.tls.keyFile = path.resolve(base('tls.keyFile'), config.tls.keyFile);
  return { config, files, origin: (key) => origin.get(key) ?? 'default' };
}

function xdgFolder(env: NodeJS.ProcessEnv, variable: string, underHome: string, key: string): string {
  const explicit = env[variable];
  if (explicit && path.isAbsolute(explicit)) return path.join(explicit, 'modelferry');
  const home = env.HOME || os.homedir();
  if (!home || home === '/') {
    throw new ConfigError(`config: ${key} is not set and this user has no home folder for its default ($${variable}/modelferry): set ${key} in the config file, or --state-dir / --cache-dir`);
  }
  return path.join(home, underHome, 'modelferry');
}

function readYamlFile(file: string, label = file): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`config: ${describeFsError(error, label, 'name a readable YAML or JSON file with --config FILE')}`);
  }
  try {
    return YAML.parse(text);
  } catch (error) {
    throw new ConfigError(`config: ${file} is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
  }
}

/** systemd passes a colon-separated list when several directories are configured. */
function firstPath(value: string): string {
  return value.split(':')[0]!;
}

function snake(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
}

function keyForEnv(defaults: Tree, name: string): string | undefined {
  for (const [section, values] of Object.entries(defaults)) {
    for (const leaf of Object.keys(values)) {
      if (name === `${ENV_PREFIX}${snake(section)}_${snake(leaf)}`) return `${section}.${leaf}`;
    }
  }
  return undefined;
}

function isKnownKey(defaults: Tree, key: string): boolean {
  const [section, leaf, ...rest] = key.split('.');
  return rest.length === 0 && section !== undefined && leaf !== undefined && defaults[section]?.[leaf] !== undefined;
}

/** Text from the environment or a flag takes the type of the key's default value. */
function coerce(defaults: Tree, key: string, raw: string, from: string): unknown {
  const [section, leaf] = key.split('.') as [string, string];
  const example = defaults[section]?.[leaf];
  // An empty variable unsets a key whose default is "none" (MODELFERRY_DEVICES_TOKEN=).
  if (example === null && raw === '') return null;
  if (typeof example === 'number') {
    // Text that is not a number stays text, so the error shows what was written (not NaN).
    const number = Number(raw);
    return raw.trim() === '' || Number.isNaN(number) ? raw : number;
  }
  if (typeof example === 'boolean') {
    if (/^(true|1|yes|on)$/i.test(raw)) return true;
    if (/^(false|0|no|off)$/i.test(raw)) return false;
    return raw;
  }
  if (Array.isArray(example) || (example !== null && typeof example === 'object')) {
    try {
      return YAML.parse(raw);
    } catch {
      throw new ConfigError(`config: ${key} from ${from} must be a YAML or JSON list`);
    }
  }
  return raw;
}

function describeOrigin(origin: Map<string, string>, key: string): string {
  const from = origin.get(key) ?? origin.get(key.split('.').slice(0, 2).join('.')) ?? origin.get(`${key.split('.')[0]}.`)
    ?? [...origin].find(([k]) => k.startsWith(`${key}.`))?.[1];
  return from ? ` (from ${from})` : '';
}

/** A token, a list of tokens, a malformed token entry or an S3 secret may hold a secret: never shown. */
function isSecret(keys: PropertyKey[]): boolean {
  if (keys.at(-1) === 'secretAccessKey') return true;
  return keys.some((k) => k === 'token' || k === 'tokens') && !keys.includes('name') && !keys.includes('scopes');
}

function knownKeys(defaults: Tree, keys: PropertyKey[]): string {
  const node = valueAt(defaults, keys);
  return node !== null && typeof node === 'object' && !Array.isArray(node) ? Object.keys(node).join(', ') : 'see config/default.yaml';
}

function valueAt(tree: unknown, keys: PropertyKey[]): unknown {
  let node: unknown = tree;
  for (const key of keys) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}
