import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { signModel } from '../signing/signature.ts';
import { digestFile } from '../store/file-digest.ts';
import { option, positional, required, UsageError, type Args } from './args.ts';
import { GatewayClient } from './gateway-client.ts';

const CLIENT_OPTIONS = `Client options: --gateway URL (or MODELFERRY_GATEWAY, default http://localhost:8080),
--token TOKEN (or MODELFERRY_TOKEN).`;

const print = (value: unknown) => console.log(JSON.stringify(value, null, 2));

export const pushHelp = `modelferry push FILE --name NAME --version VERSION [--assign SELECTOR]
                [--sign-key PRIVATE_KEY_FILE | --signature BASE64 --key-id HEX]
Uploads a model with its sha256 (and signature), so the gateway refuses a corrupted transfer.
With --assign, also assigns it to SELECTOR (a MAC, group:<name> or default).
${CLIENT_OPTIONS}`;

export async function push(args: Args): Promise<number> {
  const file = positional(args, 0, 'FILE');
  const name = required(args, 'name');
  const version = required(args, 'version');
  const client = GatewayClient.fromArgs(args);
  const { sha256, size } = await digestFile(file);
  const headers: Record<string, string> = {
    'Content-Type': 'application/octet-stream',
    'Content-Length': String(size),
    'X-Content-SHA256': sha256,
  };
  const signKey = option(args, 'sign-key');
  if (signKey !== undefined) {
    const { signature, keyId } = signModel(await readFile(signKey, 'utf8'), { name, version, sha256, size });
    headers['X-Signature'] = signature;
    headers['X-Signature-Key-Id'] = keyId;
  } else if (option(args, 'signature') !== undefined) {
    headers['X-Signature'] = required(args, 'signature');
    headers['X-Signature-Key-Id'] = required(args, 'key-id');
  }
  const body = Readable.toWeb(createReadStream(file)) as ReadableStream;
  const { status } = await client.request('PUT', `/v1/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}`, { body, headers });
  console.log(`${status === 201 ? 'stored' : 'already stored'} ${name}@${version} (sha256 ${sha256}, ${size} bytes)`);
  const selector = option(args, 'assign');
  if (selector !== undefined) {
    await client.request('PUT', `/v1/assignments/${encodeURIComponent(selector)}`, { json: { model: name, version } });
    console.log(`assigned ${name}@${version} to ${selector}`);
  }
  return 0;
}

export const assignHelp = `modelferry assign SELECTOR NAME VERSION [--rollout PERCENT --previous NAME@VERSION]
                  [--halt-on-failures N|N%] [--min-devices N] [--steps P,P,... --step-after-minutes M] [--strict]
Assigns a model to a device (MAC), a group (group:<name>) or everyone (default). VERSION may
be "latest". With --rollout, only PERCENT % of the devices get it; the others stay on --previous.
--halt-on-failures halts the rollout (everyone back on --previous) when that many devices of
its cohort (or that share of it) report failed; --steps raises the percentage one step every
--step-after-minutes while the cohort is healthy. Known devices that cannot run the model
(missing operators, delegates, memory or slot space) are listed on stderr; with --strict the
assignment is then refused (exit 1) and nothing changes.
${CLIENT_OPTIONS}`;

export async function assign(args: Args): Promise<number> {
  const selector = positional(args, 0, 'SELECTOR');
  const model = positional(args, 1, 'NAME');
  const version = positional(args, 2, 'VERSION');
  const percent = option(args, 'rollout');
  const steps = option(args, 'steps');
  let rollout: { percent?: number; previous: { model: string; version: string }; [safety: string]: unknown } | undefined;
  if (percent !== undefined || steps !== undefined) {
    const previous = required(args, 'previous');
    const at = previous.lastIndexOf('@');
    if (at < 1) throw new UsageError('--previous takes NAME@VERSION');
    rollout = { previous: { model: previous.slice(0, at), version: previous.slice(at + 1) } };
    if (percent !== undefined) rollout.percent = Number(percent);
    const halt = option(args, 'halt-on-failures');
    if (halt !== undefined) rollout.haltOnFailures = halt.endsWith('%') ? halt : Number(halt);
    const minDevices = option(args, 'min-devices');
    if (minDevices !== undefined) rollout.minDevices = Number(minDevices);
    if (steps !== undefined) {
      rollout.steps = steps.split(',').map(Number);
      rollout.stepAfterMinutes = Number(required(args, 'step-after-minutes'));
    }
  }
  const client = GatewayClient.fromArgs(args);
  const query = args.flags.has('strict') ? '?strict=true' : '';
  const { body } = await client.request<{ rollout: { percent: number } | null; compatibility?: { incompatible: Array<{ mac: string; reasons: string[] }> } }>(
    'PUT', `/v1/assignments/${encodeURIComponent(selector)}${query}`, { json: { model, version, rollout } });
  for (const device of body.compatibility?.incompatible ?? []) {
    console.error(`warning: ${device.mac} cannot run ${model}@${version} (${device.reasons.join(', ')}); it keeps what it runs`);
  }
  if (rollout) rollout.percent = body.rollout?.percent;
  console.log(`assigned ${model}@${version} to ${selector}${rollout ? ` for ${rollout.percent}% (others: ${rollout.previous.model}@${rollout.previous.version})` : ''}`);
  return 0;
}

export const unassignHelp = `modelferry unassign SELECTOR
Removes this gateway's assignment for SELECTOR.
${CLIENT_OPTIONS}`;

export async function unassign(args: Args): Promise<number> {
  const selector = positional(args, 0, 'SELECTOR');
  await GatewayClient.fromArgs(args).request('DELETE', `/v1/assignments/${encodeURIComponent(selector)}`);
  console.log(`removed the assignment for ${selector}`);
  return 0;
}

export const groupHelp = `modelferry group NAME MAC [MAC ...]
Sets the members of a device group (a device is in at most one group).
${CLIENT_OPTIONS}`;

export async function group(args: Args): Promise<number> {
  const name = positional(args, 0, 'NAME');
  const members = args.positionals.slice(1);
  await GatewayClient.fromArgs(args).request('PUT', `/v1/groups/${encodeURIComponent(name)}`, { json: { members } });
  console.log(`group ${name} has ${members.length} members`);
  return 0;
}

export const modelsHelp = `modelferry models [NAME]
Prints the catalog (or one model's versions) as JSON.
${CLIENT_OPTIONS}`;

export async function models(args: Args): Promise<number> {
  const name = args.positionals[0];
  const path = name === undefined ? '/v1/models' : `/v1/models/${encodeURIComponent(name)}`;
  print((await GatewayClient.fromArgs(args).request('GET', path)).body);
  return 0;
}

export const deleteHelp = `modelferry delete NAME VERSION
Deletes a model version that no assignment uses.
${CLIENT_OPTIONS}`;

export async function deleteModel(args: Args): Promise<number> {
  const name = positional(args, 0, 'NAME');
  const version = positional(args, 1, 'VERSION');
  await GatewayClient.fromArgs(args).request('DELETE', `/v1/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}`);
  console.log(`deleted ${name}@${version}`);
  return 0;
}

export const devicesHelp = `modelferry devices [MAC]
Prints the inventory as JSON: last seen, reported state, what each device runs and should run.
${CLIENT_OPTIONS}`;

export async function devices(args: Args): Promise<number> {
  const mac = args.positionals[0];
  const path = mac === undefined ? '/v1/devices' : `/v1/devices/${encodeURIComponent(mac)}`;
  print((await GatewayClient.fromArgs(args).request('GET', path)).body);
  return 0;
}

export const checkHelp = `modelferry check
Has the gateway re-read every cached artifact and compare it with its sha256. Corrupt ones
are removed (and never served); exits 1 when any was missing or corrupt.
${CLIENT_OPTIONS}`;

export async function check(args: Args): Promise<number> {
  const { body } = await GatewayClient.fromArgs(args).request<{ problems: number }>('POST', '/v1/cache/check');
  print(body);
  return body.problems === 0 ? 0 : 1;
}
