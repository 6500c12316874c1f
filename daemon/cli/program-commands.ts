import { stat } from 'node:fs/promises';
import { describeFsError } from '../fs-errors.ts';
import { inspectProgramFile } from '../store/executorch.ts';
import { digestFile } from '../store/file-digest.ts';
import { positional } from './args.ts';
import { CliError } from './cli-error.ts';
import { defineCommand } from './command.ts';

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
