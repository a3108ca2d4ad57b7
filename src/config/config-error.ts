import { ExitCode, UserError } from '../util/exit-codes.ts';

/**
 * A configuration problem a person can fix: which file, which field, what was
 * there, what was expected. Raised before anything starts; `distnat` exits
 * with EX_CONFIG (78).
 */
export class ConfigError extends UserError {
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super(`${file}: invalid configuration\n${problems.map((p) => `  - ${p}`).join('\n')}`, ExitCode.CONFIG);
    this.name = 'ConfigError';
  }
}
