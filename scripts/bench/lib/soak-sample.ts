/**
 * One sample of a soak's daemon: its heap just after a full garbage
 * collection (soak-probe.mjs, asked with SIGUSR2), its resident set and
 * open file descriptors from /proc (read after the collection, so the
 * resident set is not swollen by garbage either), and every counter of its
 * status (drops by reason, traffic, PAP, IKE).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DaemonStatus } from '../../lib/testbed/status.ts';
import { sleep } from '../../../test/helpers/process.ts';

export const PROBE = new URL('./soak-probe.mjs', import.meta.url).href;

export interface SoakDaemon {
  name: string;
  pid: number;
  status(): Promise<DaemonStatus>;
}

export interface DaemonSample {
  rssBytes: number;
  heapUsedBytes: number;
  heapTotalBytes: number;
  externalBytes: number;
  openFds: number;
  counters: Record<string, number>;
}

/** The environment that makes a daemon load the probe (see soak-probe.mjs). */
export function probeEnv(dir: string): Record<string, string> {
  return { NODE_OPTIONS: `--import=${PROBE}`, DISTNAT_SOAK_PROBE_DIR: dir };
}

function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

interface ProbeReport {
  t: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
}

async function collectAndMeasure(dir: string, pid: number): Promise<ProbeReport> {
  const file = join(dir, `${pid}.json`);
  const asked = Date.now();
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 200; i++) {
    await sleep(25);
    if (!existsSync(file)) continue;
    try {
      const r = JSON.parse(readFileSync(file, 'utf8')) as ProbeReport;
      if (r.t >= asked) return r;
    } catch {
      // being replaced: read again
    }
  }
  throw new Error(`pid ${pid} did not answer the soak probe within 5 s (started without it?)`);
}

export async function sampleDaemon(d: SoakDaemon, probeDir: string): Promise<DaemonSample> {
  const probe = await collectAndMeasure(probeDir, d.pid);
  const status = await d.status();
  return {
    rssBytes: rssOf(d.pid),
    heapUsedBytes: probe.heapUsed,
    heapTotalBytes: probe.heapTotal,
    externalBytes: probe.external,
    openFds: readdirSync(`/proc/${d.pid}/fd`).length,
    counters: status.counters,
  };
}

/** The counters that count packets or messages dropped, whatever their reason. */
export function isDropCounter(name: string): boolean {
  return /(^|\.)drops?(\.|$)|(^|\.)dropped$/.test(name);
}
