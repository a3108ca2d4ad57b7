import winston from 'winston';
import { JOURNAL_PRIORITY, stderrIsJournal } from './journal.ts';

/**
 * One logger per process. On a terminal: readable lines; otherwise (systemd,
 * files, pipes) JSON lines, so that every lease, SA and drop is an event with
 * fields that a log pipeline can query. When stderr is journald's stream,
 * each line starts with its syslog priority ("<4>" for a warning), which
 * journald takes off and keeps as the entry's PRIORITY: `journalctl -p
 * warning` then shows warnings and errors only.
 */
export type Logger = winston.Logger;

export interface LogOptions {
  level?: string;
  json?: boolean;
  component?: string;
  /** Prefix lines with their journald priority; default: when stderr is the journal. */
  journal?: boolean;
}

const MESSAGE = Symbol.for('message');

/** Puts "<N>" before the finished line (after the json or printf format). */
const journalPriority = winston.format((info) => {
  const line = (info as Record<symbol, unknown>)[MESSAGE];
  (info as Record<symbol, unknown>)[MESSAGE] = `<${JOURNAL_PRIORITY[info.level] ?? 6}>${String(line)}`;
  return info;
});

export function createLogger(opts: LogOptions = {}): Logger {
  const json = opts.json ?? !process.stderr.isTTY;
  const format = json
    ? winston.format.combine(winston.format.timestamp(), winston.format.json())
    : winston.format.combine(
        winston.format.timestamp({ format: 'HH:mm:ss.SSS' }),
        winston.format.printf(({ timestamp, level, message, component, ...fields }) => {
          const rest = Object.entries(fields)
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
            .join(' ');
          return `${String(timestamp)} ${level.padEnd(5)} ${component ? `[${String(component)}] ` : ''}${String(message)}${rest ? ' ' + rest : ''}`;
        }),
      );
  const journal = opts.journal ?? stderrIsJournal();
  return winston.createLogger({
    level: opts.level ?? process.env.DISTNAT_LOG_LEVEL ?? 'info',
    defaultMeta: opts.component ? { component: opts.component } : {},
    format: journal ? winston.format.combine(format, journalPriority()) : format,
    // stderr keeps stdout free for command output (`distnat status --json`).
    transports: [
      new winston.transports.Console({
        stderrLevels: ['error', 'warn', 'info', 'debug', 'verbose', 'silly'],
      }),
    ],
  });
}
