/**
 * One configuration file checked the way its daemon checks it at start
 * (validateConfig: the schema, then the rules kept with it), without
 * starting anything: files are read, nothing is opened, bound or written.
 */
import { resolve } from 'node:path';
import type { z } from 'zod';
import { ConfigError, type ConfigProblem } from '../../config/config-error.ts';
import { HostConfigSchema, type HostConfig } from '../../config/host-config.ts';
import { IkeConfigSchema, type IkeConfig } from '../../config/ike-config.ts';
import { checkConfig, readConfigFile } from '../../config/load.ts';
import { RouterConfigSchema, type RouterConfig } from '../../config/router-config.ts';
import { settle, type Settled } from '../../config/schema-walk.ts';
import { ManualKeyingSchema, type ManualKeyingConfig } from '../../ipsec/manual-config.ts';

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

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

function routerSummary(c: RouterConfig): string {
  const [lo, hi] = c.pap.portRange;
  return (
    `router: shared ${c.sharedAddress}, LAN ${c.lanAddress}, ` +
    `ports ${lo}-${hi} in ${plural((hi - lo + 1) / c.pap.blockSize, 'block')} of ${c.pap.blockSize}, ` +
    `SPIs from ${c.pap.spiFirst} in blocks of ${c.pap.spiBlockSize}, lease ${c.pap.leaseSeconds} s` +
    (c.pki === undefined ? '' : `, local CA on port ${c.pki.port}`)
  );
}

function hostSummary(c: Settled<HostConfig>): string {
  const keying = c.ipsec !== undefined ? ', manual keying' : c.ike !== undefined ? ', IKE' : '';
  return (
    `host: LAN ${c.lanAddress} via router ${c.router}, shared ${c.sharedAddress ?? `from ${c.tun}`}, ` +
    `${c.mode} mode, PAP over ${c.pap?.transport}${keying}`
  );
}

const ipsecSummary = (c: ManualKeyingConfig): string =>
  `manual keying: ${plural(c.sas.length, 'SA')}, ${plural(c.policies.length, 'policy').replace('policys', 'policies')}, ` +
  `default ${c.defaultAction}`;

const ikeSummary = (c: IkeConfig): string =>
  `IKE: ${plural(c.trust.length, 'trusted root file')}, ${plural(c.peers.length, 'peer')}, ` +
  (c.certificate !== undefined ? 'own certificate' : 'certificate from the router');

interface Checked {
  readonly report: FileReport;
  /** Other files this one names, to be checked as well. */
  readonly names: readonly { kind: FileKind; file: string }[];
}

function reportOf<S extends z.ZodType>(
  file: string,
  kind: FileKind,
  schema: S,
  data: unknown,
  summary: (c: z.output<S>) => string,
): FileReport {
  const { config, problems } = checkConfig(schema, data);
  return config === undefined
    ? { file, kind, ok: false, notes: [], problems }
    : { file, kind, ok: true, summary: summary(config), notes: [], problems: [] };
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A host file may leave out the shared address: the agent takes it from the
 * TUN device at start (once host-setup.sh has given it one), which a check
 * made before then cannot see. The rest of the file is checked as usual.
 */
function checkHost(file: string, data: unknown): FileReport {
  if (!isRecord(data) || data.sharedAddress !== undefined)
    return reportOf(file, 'host', HostConfigSchema, data, hostSummary);
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
    case 'router':
      return { report: reportOf(file, kind, RouterConfigSchema, data, routerSummary), names: [] };
    case 'ipsec':
      return { report: reportOf(file, kind, ManualKeyingSchema, data, ipsecSummary), names: [] };
    case 'ike':
      return { report: reportOf(file, kind, IkeConfigSchema, data, ikeSummary), names: [] };
    case 'host': {
      const record = isRecord(data) ? data : {};
      const names = (['ipsec', 'ike'] as const).flatMap((k) =>
        typeof record[k] === 'string' && record[k] !== '' ? [{ kind: k, file: record[k] }] : [],
      );
      return { report: checkHost(file, data), names };
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

/**
 * Checks every file given, then the manual keying and IKE files the host
 * files name (each once, however often it is named or given).
 */
export function checkFiles(given: readonly { kind: FileKind; file: string }[]): FileReport[] {
  const reports: FileReport[] = [];
  const seen = new Set<string>();
  const queue: { kind: FileKind; file: string; namedBy?: string }[] = [...given];
  for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
    const id = `${item.kind}:${resolve(item.file)}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const { report, names } = checkFile(item.kind, item.file, item.namedBy);
    reports.push(report);
    queue.push(...names.map((n) => ({ ...n, namedBy: item.file })));
  }
  return reports;
}
