import { ExitCode, UserError } from '../util/exit-codes.ts';

/** One thing wrong with a configuration file, as `distnat check --json` reports it. */
export interface ConfigProblem {
  /** Dotted path of the field (`pap.blockSize`, `sas.0.spi`); absent when the file as a whole is wrong. */
  readonly field?: string;
  /** What the field held; absent when it was not there at all. */
  readonly value?: unknown;
  /** True when the value is the schema's default, not something written in the file. */
  readonly defaulted?: boolean;
  /** What was expected instead, or what is wrong. */
  readonly expected: string;
}

export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + '...' : s;
}

/** The one-line form: field `pap.blockSize`: got 0; expected ... */
export function formatProblem(p: ConfigProblem): string {
  if (p.field === undefined) return p.expected;
  const got = `${describeValue(p.value)}${p.defaulted === true ? ' (the default)' : ''}`;
  return `field \`${p.field}\`: got ${got}; ${p.expected}`;
}

/**
 * A configuration problem a person can fix: which file, which field, what was
 * there, what was expected. Raised before anything starts; `distnat` exits
 * with EX_CONFIG (78).
 */
export class ConfigError extends UserError {
  /** Each problem in one line. */
  readonly problems: readonly string[];
  readonly details: readonly ConfigProblem[];

  constructor(
    readonly file: string,
    problems: readonly (string | ConfigProblem)[],
  ) {
    const details = problems.map((p) => (typeof p === 'string' ? { expected: p } : p));
    const lines = details.map(formatProblem);
    super(`${file}: invalid configuration\n${lines.map((p) => `  - ${p}`).join('\n')}`, ExitCode.CONFIG);
    this.name = 'ConfigError';
    this.problems = lines;
    this.details = details;
  }
}
