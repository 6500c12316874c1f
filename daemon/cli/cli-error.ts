/**
 * A failure the CLI has already put into words (a file that cannot be read, a refusal it
 * makes itself); the exit code is 1 unless it says otherwise.
 */
export class CliError extends Error {
  readonly exitCode: number;

  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}
