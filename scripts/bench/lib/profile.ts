/**
 * Where a forwarding process spends its CPU, by perf(1): `perf record -g`
 * on the process while traffic runs, then the share of samples under a few
 * kernel entry points (perf report --children). The entry points nest (the
 * softirq that delivers a packet to the next namespace runs inside the
 * sendmmsg or TUN write that sent it), so shares are "of which", not a sum.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { run } from '../../../test/helpers/process.ts';

/** Kernel functions whose inclusive share tells the story of a TUN + raw socket forwarder. */
export const ENTRY_POINTS: readonly [symbol: string, meaning: string][] = [
  ['tun_chr_read_iter', 'TUN read'],
  ['tun_chr_write_iter', 'TUN write (the local stack receives the packet inside it)'],
  ['__x64_sys_sendmmsg', 'sendmmsg (IPPROTO_RAW out of the LAN)'],
  ['__x64_sys_recvmmsg', 'recvmmsg (protocol-4 socket)'],
  ['handle_softirqs', 'softirq run in this process: the next hops receiving what it sent'],
  ['br_nf_pre_routing', 'netfilter of the LAN bridge'],
  ['do_epoll_wait', 'waiting for packets (epoll)'],
];

export interface Profile {
  /** Share of samples in user space (JavaScript, Node, the addon). */
  user: number;
  /** Inclusive share per entry point symbol. */
  entries: Map<string, number>;
}

export async function perfAvailable(): Promise<boolean> {
  try {
    return (await run(['perf', '--version'])).code === 0;
  } catch {
    return false;
  }
}

/** Records `pid` for `seconds`; resolves when the recording is written. */
export function record(pid: number, seconds: number, dir: string, label: string): Promise<string> {
  const file = join(dir, `perf-${label.replace(/\W+/g, '_')}.data`);
  return new Promise((resolve, reject) => {
    const child = spawn(
      'perf',
      ['record', '-q', '-g', '-o', file, '-p', String(pid), '--', 'sleep', String(seconds)],
      {
        stdio: 'ignore',
      },
    );
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(file) : reject(new Error(`perf record exited ${code}`)),
    );
  });
}

const PERCENT_ROW = /^\s*([\d.]+)%\s+([\d.]+)%\s+\[([k.])\]\s+(\S+)/;

export async function summarize(file: string): Promise<Profile> {
  const children = await run(
    ['perf', 'report', '-i', file, '--children', '--sort', 'sym', '--stdio', '-g', 'none'],
    {
      timeoutMs: 120_000,
    },
  );
  const entries = new Map<string, number>();
  let user = 0;
  for (const line of children.stdout.split('\n')) {
    const m = PERCENT_ROW.exec(line);
    if (m === null) continue;
    const [, inclusive, self, space, symbol] = m;
    if (space === '.') user += Number(self);
    if (ENTRY_POINTS.some(([s]) => s === symbol)) entries.set(symbol!, Number(inclusive));
  }
  return { user: user / 100, entries };
}

export function describeProfile(label: string, p: Profile): string {
  const parts = ENTRY_POINTS.filter(([s]) => (p.entries.get(s) ?? 0) >= 1).map(
    ([s, meaning]) => `${meaning} ${(p.entries.get(s) ?? 0).toFixed(0)}%`,
  );
  return `  ${label}: user space ${(p.user * 100).toFixed(0)}%; ${parts.join('; ')}`;
}
