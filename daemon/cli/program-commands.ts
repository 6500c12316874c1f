import { stat } from 'node:fs/promises';
import { inspectProgramFile } from '../store/executorch.ts';
import { digestFile } from '../store/file-digest.ts';
import { positional, UsageError, type Args } from './args.ts';
import { GatewayClient } from './gateway-client.ts';

export const inspectHelp = `modelferry inspect FILE
Reads an ExecuTorch program (.pte) on this machine, without a gateway, and prints what the
gateway would record for it as JSON: methods, operators, delegates, planned memory, inputs
and outputs, constant data and segments, and what a device needs to run it. Exits 1 when
the file is not a readable program (the reason is on stderr), as a push would be refused.`;

export async function inspect(args: Args): Promise<number> {
  const file = positional(args, 0, 'FILE');
  const { size } = await stat(file);
  const check = await inspectProgramFile(file, size);
  if (check.format !== 'executorch') {
    console.error(`modelferry inspect: ${file} is not a readable ExecuTorch program: ${check.reason}`);
    return 1;
  }
  console.log(JSON.stringify({ file, size, sha256: (await digestFile(file)).sha256, program: check.program }, null, 2));
  return 0;
}

export const rolloutHelp = `modelferry rollout halt|resume|promote SELECTOR
halt: stop the staged rollout of SELECTOR's assignment: its whole cohort is offered the
previous model again. resume: undo a halt (automatic or by hand); failures reported before
the resume no longer count. promote: raise it to 100 % (and clear a halt). Prints the
assignment with its cohort's health as JSON.
Client options: --gateway URL (or MODELFERRY_GATEWAY, default http://localhost:8080),
--token TOKEN (or MODELFERRY_TOKEN).`;

export async function rollout(args: Args): Promise<number> {
  const action = positional(args, 0, 'halt|resume|promote');
  if (!['halt', 'resume', 'promote'].includes(action)) throw new UsageError(`unknown rollout action ${action}: use halt, resume or promote`);
  const selector = positional(args, 1, 'SELECTOR');
  const { body } = await GatewayClient.fromArgs(args).request('POST', `/v1/assignments/${encodeURIComponent(selector)}/rollout/${action}`);
  console.log(JSON.stringify(body, null, 2));
  return 0;
}
