import winston from 'winston';

/**
 * One logger per process. On a terminal: readable lines; otherwise (systemd,
 * files, pipes) JSON lines, so that every lease, SA and drop is an event with
 * fields that a log pipeline can query.
 */
export type Logger = winston.Logger;

export interface LogOptions {
  level?: string;
  json?: boolean;
  component?: string;
}

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
  return winston.createLogger({
    level: opts.level ?? process.env.DISTNAT_LOG_LEVEL ?? 'info',
    defaultMeta: opts.component ? { component: opts.component } : {},
    format,
    // stderr keeps stdout free for command output (`distnat status --json`).
    transports: [
      new winston.transports.Console({
        stderrLevels: ['error', 'warn', 'info', 'debug', 'verbose', 'silly'],
      }),
    ],
  });
}
