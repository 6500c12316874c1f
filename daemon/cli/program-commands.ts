import { stat } from 'node:fs/promises';
import { inspectProgramFile } from '../store/executorch.ts';
import { digestFile } from '../store/file-digest.ts';
import { positional, type Args } from './args.ts';

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
