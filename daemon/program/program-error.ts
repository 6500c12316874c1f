/**
 * A file that claims to be an ExecuTorch program but cannot be read as one. The message
 * names where in the program the problem is (e.g. `execution_plan[0].operators[2].name`)
 * and what is wrong, for the person who pushed it.
 */
export class ProgramFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProgramFormatError';
  }
}
