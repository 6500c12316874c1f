import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { isModelferryError } from '../errors.ts';
import { parseMac } from '../contract/identifiers.ts';
import { integerOption, option, positional, required, UsageError, type Args } from './args.ts';
import { CliError } from './cli-error.ts';
import { defineCommand } from './command.ts';
import { ClientError, GatewayClient } from './gateway-client.ts';
import type { SignatureClaim } from '../signing/trust.ts';
import { describeModelFile, SIGNING_FLAGS, signingChoice, signWithKeyFile } from './key-commands.ts';

const print = (value: unknown) => console.log(JSON.stringify(value, null, 2));
const segment = encodeURIComponent;

interface AssignmentView {
  selector: string;
  model: string;
  version: string;
  resolves: string | null;
  rollout: { percent: number; previous: { model: string; version: string } } | null;
}

const FORCE = { kind: 'boolean', help: 'assign to a group even if it does not exist yet or has no members' } as const;

/**
 * A group selector that names no group, or an empty one, reaches no device: almost always a
 * typo. Refused unless --force says it is meant (the group is filled in later).
 */
async function checkSelectorReachesDevices(client: GatewayClient, selector: string, args: Args): Promise<void> {
  if (!selector.startsWith('group:') || args.flags.has('force')) return;
  const name = selector.slice('group:'.length);
  let members: string[];
  try {
    members = (await client.request<{ members: string[] }>('GET', `/v1/groups/${segment(name)}`)).body.members;
  } catch (error) {
    if (error instanceof ClientError && error.code === 'group_not_found') {
      throw new CliError(`${selector} names no group on this gateway, so no device would get it: create it with "modelferry group ${name} MAC ..." (see "modelferry groups"), or pass --force to assign anyway`);
    }
    throw error;
  }
  if (members.length === 0) {
    throw new CliError(`group ${name} has no members, so no device would get it: add devices with "modelferry group ${name} MAC ...", or pass --force to assign anyway`);
  }
}

export const push = defineCommand({
  name: 'push',
  summary: 'upload a model (with its sha256, optionally signed) and optionally assign it',
  description: `Uploads a model with its sha256, so the gateway refuses a corrupted transfer, and signs it
on the way with --sign-key: ed25519 over
modelferry-v2:<name>:<version>:<sha256>:<size>:<seq>, with --seq or the time in
milliseconds, so that devices refuse an older signed model replayed later. With --assign,
also assigns it to SELECTOR (a MAC, group:<name> or default). A gateway busy with other
pushes (503 busy) is waited out as it asks (Retry-After) and tried again, up to 5 times.`,
  operands: [{ name: 'FILE' }],
  client: true,
  flags: {
    name: { placeholder: 'NAME', required: true, help: 'model name, [a-z0-9][a-z0-9._-]' },
    version: { placeholder: 'VERSION', required: true, help: 'version, e.g. 2026.11.24-3' },
    assign: { placeholder: 'SELECTOR', help: 'then assign it to a MAC, group:<name> or default' },
    force: FORCE,
    ...SIGNING_FLAGS,
  },
  async run(args) {
    const file = positional(args, 0, 'FILE');
    const name = required(args, 'name');
    const version = required(args, 'version');
    const signing = signingChoice(args);
    const client = GatewayClient.fromArgs(args);
    const selector = option(args, 'assign');
    const { sha256, size } = await describeModelFile(file, 'FILE');
    const claim = signing.kind === 'key'
      ? await signWithKeyFile(signing.keyFile, '--sign-key', { name, version, sha256, size, seq: signing.seq })
      : signing.kind === 'given' ? signing.claim : undefined;
    if (selector !== undefined) await checkSelectorReachesDevices(client, selector, args);
    const status = await pushModel(client, { name, version, sha256, size, claim }, () => Readable.toWeb(createReadStream(file)) as ReadableStream);
    console.log(`${status === 201 ? 'stored' : 'already stored'} ${name}@${version} (sha256 ${sha256}, ${size} bytes${claim?.seq ? `, signature sequence ${claim.seq}` : ''})`);
    if (selector !== undefined) {
      try {
        printAssignmentWarnings((await client.request<AssignmentAnswer>('PUT', `/v1/assignments/${segment(selector)}`, { json: { model: name, version } })).body);
      } catch (error) {
        // The model is stored: say so, so a pipeline's log shows which half to do again.
        if (!(error instanceof ClientError)) throw error;
        const hint = error.code === 'forbidden' ? ' (--assign needs a token with the assign or admin scope, e.g. scopes: [push, assign])' : '';
        throw new CliError(`${name}@${version} is stored but not assigned to ${selector}: ${error.message}${hint}`);
      }
      console.log(`assigned ${name}@${version} to ${selector}`);
    }
    return 0;
  },
});

/** The gateway's answer to PUT /v1/assignments/{selector}, as far as the CLI reads it. */
export interface AssignmentAnswer {
  rollout: { percent: number } | null;
  compatibility?: { incompatible: Array<{ mac: string; reasons: string[] }> };
  warnings?: Array<{ code: string; message: string }>;
}

/** What the gateway warned of when it took an assignment (devices that will refuse it), on stderr. */
export function printAssignmentWarnings(answer: AssignmentAnswer): void {
  for (const warning of answer.warnings ?? []) console.error(`warning: ${warning.message}`);
}

/**
 * PUT /v1/models/{name}/{version} with its digest and signature headers, waiting out a busy
 * gateway; `body` makes the bytes afresh for each try. The answer's status (201 stored, 200
 * already stored).
 */
export async function pushModel(
  client: GatewayClient,
  model: { name: string; version: string; sha256: string; size: number; claim: SignatureClaim | undefined },
  body: () => ReadableStream | Buffer,
): Promise<number> {
  const headers: Record<string, string> = {
    'Content-Type': 'application/octet-stream',
    'Content-Length': String(model.size),
    'X-Content-SHA256': model.sha256,
  };
  if (model.claim?.signature) {
    headers['X-Signature'] = model.claim.signature;
    headers['X-Signature-Key-Id'] = model.claim.keyId!;
    if (model.claim.seq) headers['X-Signature-Seq'] = model.claim.seq;
  }
  const { status } = await whenNotBusy(() => client.request('PUT', `/v1/models/${segment(model.name)}/${segment(model.version)}`, { body: body(), headers }));
  return status;
}

/** Tries a push again this many times when the gateway is busy with others (503 busy). */
const BUSY_RETRIES = 5;

/**
 * A gateway takes only `artifacts.maxConcurrentPushes` pushes at once and answers the next
 * `503 busy` with Retry-After before reading it; parallel pipeline jobs meet that, so the
 * push waits as told and tries again (a push is safe to repeat: same bytes, same answer).
 */
async function whenNotBusy<T>(attempt: () => Promise<T>): Promise<T> {
  for (let tried = 1; ; tried++) {
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof ClientError) || error.code !== 'busy' || tried > BUSY_RETRIES) throw error;
      const seconds = error.retryAfterSeconds ?? 5;
      console.error(`the gateway is busy with other pushes; trying again in ${seconds} s (${tried} of ${BUSY_RETRIES})`);
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    }
  }
}

export const assign = defineCommand({
  name: 'assign',
  summary: 'assign a model version to a device, a group or everyone, optionally as a staged rollout',
  description: `Assigns a model to a device (MAC), a group (group:<name>) or everyone (default). VERSION
may be "latest". With --rollout, only PERCENT % of the devices get it; the others stay on
--previous, which defaults to what SELECTOR is assigned today (when raising the percentage
of the same rollout, its previous version). --halt-on-failures halts the rollout (everyone
back on --previous) when that many devices of its cohort (or that share of it) report
failed; --steps raises the percentage one step every --step-after-minutes while the cohort
is healthy. Known devices that cannot run the model (missing operators, delegates, memory
or slot space) are listed on stderr; with --strict the assignment is then refused (exit 1)
and nothing changes.`,
  operands: [{ name: 'SELECTOR' }, { name: 'NAME' }, { name: 'VERSION' }],
  client: true,
  flags: {
    rollout: { placeholder: 'PERCENT', help: 'stage it: a whole percentage from 0 to 100' },
    previous: { placeholder: 'NAME@VERSION', help: 'what the other devices keep (default: the current assignment)' },
    'halt-on-failures': { placeholder: 'N|N%', help: 'halt the rollout when this many (or this share) of its cohort report failed' },
    'min-devices': { placeholder: 'N', help: 'devices that must have reported before a share in --halt-on-failures counts' },
    steps: { placeholder: 'P,P,...', help: 'percentages to raise the rollout through, one per --step-after-minutes' },
    'step-after-minutes': { placeholder: 'M', help: 'minutes of a healthy cohort before the next step (with --steps)' },
    strict: { kind: 'boolean', help: 'refuse (exit 1) when a known device cannot run the model' },
    force: FORCE,
  },
  async run(args) {
    const selector = positional(args, 0, 'SELECTOR');
    const model = positional(args, 1, 'NAME');
    const version = positional(args, 2, 'VERSION');
    const percent = integerOption(args, 'rollout', 0, 100, 'a whole percentage');
    const steps = option(args, 'steps')?.split(',').map((step) => {
      if (!/^\s*\d+\s*$/.test(step) || Number(step) > 100) throw new UsageError(`--steps takes whole percentages from 0 to 100 separated by commas, e.g. 10,50,100, not "${option(args, 'steps')}"`);
      return Number(step);
    });
    const staged = percent !== undefined || steps !== undefined;
    for (const flag of ['previous', 'halt-on-failures', 'min-devices', 'step-after-minutes']) {
      if (!staged && option(args, flag) !== undefined) throw new UsageError(`--${flag} only goes with --rollout PERCENT or --steps`);
    }
    const halt = option(args, 'halt-on-failures');
    if (halt !== undefined && !/^\d+%?$/.test(halt)) throw new UsageError(`--halt-on-failures takes a number of devices (3) or a share (5%), not "${halt}"`);
    const minDevices = integerOption(args, 'min-devices', 0, 1_000_000, 'a number of devices');
    const stepAfterMinutes = integerOption(args, 'step-after-minutes', 1, 525_600, 'a number of minutes');
    if (steps !== undefined && stepAfterMinutes === undefined) throw new UsageError('--steps needs --step-after-minutes M');
    const previousText = option(args, 'previous');
    let previous = previousText === undefined ? undefined : parseRef(previousText, '--previous');
    const client = GatewayClient.fromArgs(args);
    await checkSelectorReachesDevices(client, selector, args);
    if (staged && previous === undefined) previous = await currentAssignment(client, selector, { model, version });
    let rollout: { percent?: number; previous: { model: string; version: string }; [safety: string]: unknown } | undefined;
    if (staged) {
      rollout = { previous: previous! };
      if (percent !== undefined) rollout.percent = percent;
      if (halt !== undefined) rollout.haltOnFailures = halt.endsWith('%') ? halt : Number(halt);
      if (minDevices !== undefined) rollout.minDevices = minDevices;
      if (steps !== undefined) {
        rollout.steps = steps;
        rollout.stepAfterMinutes = stepAfterMinutes;
      }
    }
    const query = args.flags.has('strict') ? '?strict=true' : '';
    const { body } = await client.request<AssignmentAnswer>('PUT', `/v1/assignments/${segment(selector)}${query}`, { json: { model, version, rollout } });
    for (const device of body.compatibility?.incompatible ?? []) {
      console.error(`warning: ${device.mac} cannot run ${model}@${version} (${device.reasons.join(', ')}); it keeps what it runs`);
    }
    printAssignmentWarnings(body);
    if (rollout) rollout.percent = body.rollout?.percent;
    console.log(`assigned ${model}@${version} to ${selector}${rollout ? ` for ${rollout.percent}% (others: ${rollout.previous.model}@${rollout.previous.version})` : ''}`);
    return 0;
  },
});

function parseRef(text: string, flag: string): { model: string; version: string } {
  const at = text.lastIndexOf('@');
  if (at < 1 || at === text.length - 1) throw new UsageError(`${flag} takes NAME@VERSION, e.g. kws@2026.11.24-3, not "${text}"`);
  return { model: text.slice(0, at), version: text.slice(at + 1) };
}

/** What the other devices of a rollout keep when --previous is not given. */
async function currentAssignment(client: GatewayClient, selector: string, next: { model: string; version: string }): Promise<{ model: string; version: string }> {
  const { assignments } = (await client.request<{ assignments: AssignmentView[] }>('GET', '/v1/assignments')).body;
  const canonical = canonicalSelector(selector);
  const current = assignments.find((a) => a.selector === canonical);
  if (!current) {
    throw new UsageError(`${selector} has no assignment today, so a rollout has nothing to keep the other devices on: give --previous NAME@VERSION, or assign without --rollout`);
  }
  const concrete = { model: current.model, version: current.resolves ?? current.version };
  // Raising the percentage of the same rollout keeps its previous version, not the new one.
  const same = current.model === next.model && (current.version === next.version || concrete.version === next.version);
  if (same && current.rollout) return current.rollout.previous;
  if (same) throw new UsageError(`${selector} already runs ${next.model}@${next.version}: a rollout needs --previous NAME@VERSION to keep the other devices on`);
  return concrete;
}

function canonicalSelector(selector: string): string {
  if (selector === 'default' || selector.startsWith('group:')) return selector;
  try {
    return parseMac(selector);
  } catch (error) {
    if (isModelferryError(error)) return selector;
    throw error;
  }
}

export const unassign = defineCommand({
  name: 'unassign',
  summary: 'remove the assignment of a device, a group or default',
  description: 'Removes this gateway\'s assignment for SELECTOR (a MAC, group:<name> or default).',
  operands: [{ name: 'SELECTOR' }],
  client: true,
  async run(args) {
    const selector = positional(args, 0, 'SELECTOR');
    await GatewayClient.fromArgs(args).request('DELETE', `/v1/assignments/${segment(selector)}`);
    console.log(`removed the assignment for ${selector}`);
    return 0;
  },
});

export const assignments = defineCommand({
  name: 'assignments',
  summary: 'print the assignments, what each resolves to and its rollout health, as JSON',
  description: 'Prints every assignment as JSON: selector, model, version, what "latest" resolves to,\nthe rollout if any, and the devices in sync, failed and pending.',
  client: true,
  async run(args) {
    print((await GatewayClient.fromArgs(args).request('GET', '/v1/assignments')).body);
    return 0;
  },
});

export const group = defineCommand({
  name: 'group',
  summary: 'set the members of a device group',
  description: 'Sets the members of a device group, replacing the old list (a device is in at most one\ngroup). Remove single devices with "modelferry ungroup".',
  operands: [{ name: 'NAME' }, { name: 'MAC', repeated: true }],
  client: true,
  async run(args) {
    const name = positional(args, 0, 'NAME');
    const members = args.positionals.slice(1);
    await GatewayClient.fromArgs(args).request('PUT', `/v1/groups/${segment(name)}`, { json: { members } });
    console.log(`group ${name} has ${members.length} members`);
    return 0;
  },
});

export const groups = defineCommand({
  name: 'groups',
  summary: 'print the device groups (or one group) as JSON',
  description: 'Prints every device group and its members as JSON, or one group with NAME.',
  operands: [{ name: 'NAME', optional: true }],
  client: true,
  async run(args) {
    const name = args.positionals[0];
    print((await GatewayClient.fromArgs(args).request('GET', name === undefined ? '/v1/groups' : `/v1/groups/${segment(name)}`)).body);
    return 0;
  },
});

export const ungroup = defineCommand({
  name: 'ungroup',
  summary: 'take devices out of whatever group they are in',
  description: 'Removes each device from the group it is in; the group keeps its other members.\nExits 1 when a device was in no group.',
  operands: [{ name: 'MAC', repeated: true }],
  client: true,
  async run(args) {
    const macs = args.positionals.map((mac) => {
      try {
        return parseMac(mac);
      } catch (error) {
        if (isModelferryError(error)) throw new UsageError(error.message);
        throw error;
      }
    });
    const client = GatewayClient.fromArgs(args);
    const { groups: all } = (await client.request<{ groups: Array<{ name: string; members: string[] }> }>('GET', '/v1/groups')).body;
    let missing = 0;
    for (const mac of new Set(macs)) {
      const found = all.find((g) => g.members.includes(mac));
      if (!found) {
        console.error(`modelferry ungroup: ${mac} is in no group`);
        missing++;
        continue;
      }
      found.members = found.members.filter((m) => m !== mac);
      await client.request('PUT', `/v1/groups/${segment(found.name)}`, { json: { members: found.members } });
      console.log(`removed ${mac} from group ${found.name} (${found.members.length} members left)`);
    }
    return missing === 0 ? 0 : 1;
  },
});

export const models = defineCommand({
  name: 'models',
  summary: 'print the catalog (or one model\'s versions) as JSON',
  description: 'Prints the catalog (or one model\'s versions) as JSON, each with whether its bytes are cached.',
  operands: [{ name: 'NAME', optional: true }],
  client: true,
  async run(args) {
    const name = args.positionals[0];
    const path = name === undefined ? '/v1/models' : `/v1/models/${segment(name)}`;
    print((await GatewayClient.fromArgs(args).request('GET', path)).body);
    return 0;
  },
});

export const deleteModel = defineCommand({
  name: 'delete',
  summary: 'delete a model version that no assignment uses',
  description: 'Deletes a model version from the catalog; refused (in_use) while an assignment resolves to it.',
  operands: [{ name: 'NAME' }, { name: 'VERSION' }],
  client: true,
  async run(args) {
    const name = positional(args, 0, 'NAME');
    const version = positional(args, 1, 'VERSION');
    await GatewayClient.fromArgs(args).request('DELETE', `/v1/models/${segment(name)}/${segment(version)}`);
    console.log(`deleted ${name}@${version}`);
    return 0;
  },
});

export const devices = defineCommand({
  name: 'devices',
  summary: 'print the device inventory (or one device) as JSON; accept, reject or preauthorize devices',
  description: `Prints the inventory as JSON: last seen, reported state, what each device runs and should
run, and its admission. Under devices.admission pinned or accepted:
  devices pending             the devices that offered a key and wait for an operator
  devices accept MAC          serve it (a pending device, or a pinned one's new key after a reflash)
  devices reject MAC          refuse it from now on (its token ends at once)
  devices preauthorize FILE   accept devices by MAC and key before they ever connect: a CSV of
                              "mac,publicKey" lines (the key as base64 of its 32 bytes), as a
                              manufacturing line writes it; a header line and # comments are skipped`,
  // accept, reject and preauthorize take a second operand (the MAC, the CSV file).
  operands: [{ name: 'MAC|pending|accept|reject|preauthorize', optional: true }, { name: 'MAC|FILE', optional: true }],
  client: true,
  async run(args) {
    const [first, second] = args.positionals;
    const client = GatewayClient.fromArgs(args);
    if (first === 'pending') {
      print((await client.request('GET', '/v1/admission?state=pending')).body);
    } else if (first === 'accept' || first === 'reject') {
      if (second === undefined) throw new UsageError(`devices ${first} needs the device's MAC`);
      print((await client.request('POST', `/v1/devices/${segment(second)}/${first}`)).body);
    } else if (first === 'preauthorize') {
      if (second === undefined) throw new UsageError('devices preauthorize needs a CSV file of mac,publicKey lines');
      print((await client.request('POST', '/v1/admission/preauthorize', { json: { devices: await readDeviceKeys(second) } })).body);
    } else {
      if (second !== undefined) throw new UsageError(`devices ${first} takes nothing after it`);
      print((await client.request('GET', first === undefined ? '/v1/devices' : `/v1/devices/${segment(first)}`)).body);
    }
    return 0;
  },
});

/** `mac,publicKey` per line; a header line, blank lines and # comments are skipped. */
async function readDeviceKeys(file: string): Promise<Array<{ mac: string; publicKey: string }>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new CliError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const entries: Array<{ mac: string; publicKey: string }> = [];
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || /^mac\s*,/i.test(line)) continue;
    const [mac, publicKey, ...rest] = line.split(',').map((field) => field.trim());
    if (!mac || !publicKey || rest.length > 0) throw new CliError(`${file} line ${index + 1}: expected "mac,publicKey", got "${line}"`);
    entries.push({ mac, publicKey });
  }
  if (entries.length === 0) throw new CliError(`${file} lists no devices`);
  return entries;
}

export const check = defineCommand({
  name: 'check',
  summary: 're-hash every cached model; exit 1 on any problem',
  description: `Has the gateway re-read every cached artifact and compare it with its sha256. Corrupt ones
are removed (and never served); exits 1 when any was missing or corrupt.`,
  client: true,
  async run(args) {
    const { body } = await GatewayClient.fromArgs(args).request<{ problems: number }>('POST', '/v1/cache/check');
    print(body);
    return body.problems === 0 ? 0 : 1;
  },
});
