import { stat } from 'node:fs/promises';
import { describeFsError } from '../fs-errors.ts';
import { inspectProgramFile } from '../store/executorch.ts';
import { digestFile } from '../store/file-digest.ts';
import { positional, UsageError } from './args.ts';
import { CliError } from './cli-error.ts';
import { defineCommand } from './command.ts';
import { GatewayClient } from './gateway-client.ts';

export const inspect = defineCommand({
  name: 'inspect',
  summary: 'read a .pte program here, without a gateway, and print what the gateway would record',
  description: `Reads an ExecuTorch program (.pte) on this machine, without a gateway, and prints what the
gateway would record for it as JSON: methods, operators, delegates, planned memory, inputs
and outputs, constant data and segments, and what a device needs to run it. Exits 1 when
the file is not a readable program (the reason is on stderr), as a push would be refused.`,
  operands: [{ name: 'FILE' }],
  async run(args) {
    const file = positional(args, 0, 'FILE');
    let size: number;
    try {
      const info = await stat(file);
      if (!info.isFile()) throw new CliError(`FILE ${file} is not a regular file: name the .pte file`);
      size = info.size;
    } catch (error) {
      if (error instanceof CliError) throw error;
      throw new CliError(describeFsError(error, `FILE ${file}`));
    }
    const check = await inspectProgramFile(file, size);
    if (check.format !== 'executorch') {
      throw new CliError(`${file} is not a readable ExecuTorch program: ${check.reason}`);
    }
    console.log(JSON.stringify({ file, size, sha256: (await digestFile(file)).sha256, program: check.program }, null, 2));
    return 0;
  },
});

export const rollout = defineCommand({
  name: 'rollout',
  summary: 'halt, resume or promote the staged rollout of an assignment',
  description: `halt: stop the staged rollout of SELECTOR's assignment: its whole cohort is offered the
previous model again. resume: undo a halt (automatic or by hand); failures reported before
the resume no longer count. promote: raise it to 100 % (and clear a halt). Prints the
assignment with its cohort's health as JSON.`,
  operands: [{ name: 'halt|resume|promote' }, { name: 'SELECTOR' }],
  client: true,
  async run(args) {
    const action = positional(args, 0, 'halt|resume|promote');
    if (!['halt', 'resume', 'promote'].includes(action)) throw new UsageError(`unknown rollout action ${action}: use halt, resume or promote`);
    const selector = positional(args, 1, 'SELECTOR');
    const { body } = await GatewayClient.fromArgs(args).request('POST', `/v1/assignments/${encodeURIComponent(selector)}/rollout/${action}`);
    console.log(JSON.stringify(body, null, 2));
    return 0;
  },
});
