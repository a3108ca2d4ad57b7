/**
 * Log lines for journald. A daemon started by systemd writes stderr into a
 * journal stream; a line that starts with "<N>" (a syslog priority) becomes
 * an entry of that PRIORITY, without the prefix, so that `journalctl -p
 * warning` shows warnings and errors only. Kept apart from log.ts so that
 * the command line can use it without loading the logger.
 */
import { fstatSync } from 'node:fs';

/** syslog(3) priorities of the levels: err, warning, info, debug. */
export const JOURNAL_PRIORITY: Readonly<Record<string, number>> = {
  error: 3,
  warn: 4,
  info: 6,
  verbose: 7,
  debug: 7,
  silly: 7,
};

/**
 * Whether stderr is the journal stream systemd connected: JOURNAL_STREAM
 * holds that stream's "device:inode", which a redirection of stderr (to a
 * file, a pipe) no longer matches.
 */
export function stderrIsJournal(
  env: NodeJS.ProcessEnv = process.env,
  stat: () => { dev: bigint; ino: bigint } = () => fstatSync(2, { bigint: true }),
): boolean {
  const stream = env.JOURNAL_STREAM;
  if (stream === undefined || !/^\d+:\d+$/.test(stream)) return false;
  try {
    const { dev, ino } = stat();
    return stream === `${dev}:${ino}`;
  } catch {
    return false;
  }
}

/**
 * Text written to stderr outside the logger (the command's own error
 * message), each line with the level's priority when stderr is the journal:
 * journald takes every line for an entry of its own.
 */
export function forJournal(text: string, level: string, journal: boolean = stderrIsJournal()): string {
  if (!journal) return text;
  const prefix = `<${JOURNAL_PRIORITY[level] ?? 6}>`;
  return text.replace(/^(?=.)/gm, prefix);
}
