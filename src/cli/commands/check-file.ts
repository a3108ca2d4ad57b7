/**
 * One configuration file checked the way its daemon checks it at start
 * (validateConfig: the schema, then the rules kept with it), without
 * starting anything: files are read, nothing is opened, bound or written.
 */
import { resolve } from 'node:path';
import type { z } from 'zod';
import { ConfigError, type ConfigProblem } from '../../config/config-error.ts';
import { hostAgainstRouter, routerNamedByHost } from '../../config/deployment-rules.ts';
import { HostConfigSchema, withStartingRouter, type HostConfig } from '../../config/host-config.ts';
import { IkeConfigSchema } from '../../config/ike-config.ts';
import { checkConfig, readConfigFile } from '../../config/load.ts';
import { RouterConfigSchema, type RouterConfig } from '../../config/router-config.ts';
import { settle, type Settled } from '../../config/schema-walk.ts';
import { ManualKeyingSchema } from '../../ipsec/manual-config.ts';
import { hostSummary, ikeSummary, ipsecSummary, routerSummary } from './check-summary.ts';

export const FILE_KINDS = ['router', 'host', 'ipsec', 'ike'] as const;
export type FileKind = (typeof FILE_KINDS)[number];

export interface FileReport {
  readonly file: string;
  readonly kind: FileKind;
  /** The host file that names this one (its `ipsec:` or `ike:`), when it was not given directly. */
  readonly namedBy?: string;
  readonly ok: boolean;
  /** What the file sets up, in one line (when ok). */
  readonly summary?: string;
  /** What will be decided at start rather than by the file. */
  readonly notes: readonly string[];
  readonly problems: readonly ConfigProblem[];
}

interface Checked {
  readonly report: FileReport;
  /** Other files this one names, to be checked as well. */
  readonly names: readonly { kind: FileKind; file: string }[];
  /** A valid router's configuration, or a valid host's as far as the file gives it. */
  readonly router?: RouterConfig;
  readonly host?: Settled<HostConfig>;
  /** What the file holds, to tell a value written from a default. */
  readonly data?: unknown;
}

function reportOf<S extends z.ZodType>(
  file: string,
  kind: FileKind,
  schema: S,
  data: unknown,
  summary: (c: z.output<S>) => string,
): { report: FileReport; config?: z.output<S> } {
  const { config, problems } = checkConfig(schema, data);
  return config === undefined
    ? { report: { file, kind, ok: false, notes: [], problems } }
    : { report: { file, kind, ok: true, summary: summary(config), notes: [], problems: [] }, config };
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A host file may leave out the shared address: the agent takes it from the
 * TUN device at start (once host-setup.sh has given it one), which a check
 * made before then cannot see. The rest of the file is checked as usual.
 */
function checkHost(file: string, input: unknown): FileReport {
  const data = isRecord(input) ? withStartingRouter(input) : input;
  if (!isRecord(data) || data.sharedAddress !== undefined)
    return reportOf(file, 'host', HostConfigSchema, data, hostSummary).report;
  const view = settle(HostConfigSchema, data) ?? {};
  const notes = [
    `sharedAddress not given: \`distnat host\` takes the address of the TUN device ${view.tun ?? 'dn0'} at start`,
  ];
  const problems = checkConfig(HostConfigSchema, data).problems.filter((p) => p.field !== 'sharedAddress');
  return problems.length > 0
    ? { file, kind: 'host', ok: false, notes, problems }
    : { file, kind: 'host', ok: true, summary: hostSummary(view), notes, problems };
}

function checkData(kind: FileKind, file: string, data: unknown): Checked {
  switch (kind) {
    case 'router': {
      const { report, config } = reportOf(file, kind, RouterConfigSchema, data, routerSummary);
      return { report, names: [], ...(config && { router: config }) };
    }
    case 'ipsec':
      return { report: reportOf(file, kind, ManualKeyingSchema, data, ipsecSummary).report, names: [] };
    case 'ike':
      return { report: reportOf(file, kind, IkeConfigSchema, data, ikeSummary).report, names: [] };
    case 'host': {
      const record = isRecord(data) ? data : {};
      const names = (['ipsec', 'ike'] as const).flatMap((k) =>
        typeof record[k] === 'string' && record[k] !== '' ? [{ kind: k, file: record[k] }] : [],
      );
      const report = checkHost(file, data);
      const host = report.ok ? settle(HostConfigSchema, data) : undefined;
      return { report, names, data, ...(host && { host }) };
    }
  }
}

/** Checks one file of a kind; a file that cannot be read or parsed is a report with that problem. */
export function checkFile(kind: FileKind, file: string, namedBy?: string): Checked {
  let data: unknown;
  try {
    data = readConfigFile(file);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return {
      report: { file, kind, ok: false, notes: [], problems: e.details, ...(namedBy && { namedBy }) },
      names: [],
    };
  }
  const checked = checkData(kind, file, data);
  return namedBy === undefined ? checked : { ...checked, report: { ...checked.report, namedBy } };
}

/** A valid host's problems against the router files checked with it. */
function againstRouters(
  host: Settled<HostConfig>,
  routers: readonly { file: string; config: RouterConfig }[],
): ConfigProblem[] {
  const named = routerNamedByHost(host, routers);
  if (named.length > 0) return named;
  const router = routers.find((r) => r.config.lanAddress === host.router);
  return router === undefined ? [] : hostAgainstRouter(host, router.config, router.file);
}

/**
 * Checks every file given, then the manual keying and IKE files the host
 * files name (each once, however often it is named or given), then each
 * valid host file against the router files given with it.
 */
export function checkFiles(given: readonly { kind: FileKind; file: string }[]): FileReport[] {
  const checked: Checked[] = [];
  const seen = new Set<string>();
  const queue: { kind: FileKind; file: string; namedBy?: string }[] = [...given];
  for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
    const id = `${item.kind}:${resolve(item.file)}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const one = checkFile(item.kind, item.file, item.namedBy);
    checked.push(one);
    queue.push(...one.names.map((n) => ({ ...n, namedBy: item.file })));
  }
  const routers = checked.flatMap((c) => (c.router ? [{ file: c.report.file, config: c.router }] : []));
  return checked.map(({ report, host, data }) => {
    const problems = host === undefined ? [] : againstRouters(host, routers);
    if (problems.length === 0) return report;
    const written = (field: string): boolean =>
      field.split('.').reduce<unknown>((v, k) => (isRecord(v) ? v[k] : undefined), data) !== undefined;
    return {
      ...report,
      ok: false,
      summary: undefined,
      problems: problems.map((p) =>
        p.field === undefined || written(p.field) ? p : { ...p, defaulted: true },
      ),
    };
  });
}
