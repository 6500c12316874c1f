/**
 * A configuration the daemon must not start with: the message names the key, the value,
 * where it came from and what is allowed. `modelferry serve` exits 78 on it.
 */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
