/**
 * Where a Node process spent its time, from a V8 .cpuprofile (node
 * --cpu-prof): self time by function and the inclusive time of chosen
 * functions, as shares of the busy time (idle, and module loading when the
 * process started, left out).
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** Busy milliseconds: not idle, not module loading. */
  busyMs: number;
  /** Self share of the busy time by "function file", largest first. */
  self: [string, number][];
  /** Inclusive share by "function file" (each counted once per sample). */
  inclusive: Map<string, number>;
}

const labelOf = (f: CallFrame): string =>
  `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(src|node_modules|dist)\//, '$1/').replace(/^node:/, '')}`;

export function summarizeCpuProfile(file: string): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const time = new Map<number, number>();
  p.samples.forEach((id, i) => time.set(id, (time.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of time) {
    const chain: string[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur))
      chain.push(labelOf(byId.get(cur)!.callFrame));
    if (
      chain[0]!.startsWith('(idle)') ||
      chain.some((l) => l.startsWith('evaluate ') || l.includes('modules/esm'))
    )
      continue;
    busy += us;
    self.set(chain[0]!, (self.get(chain[0]!) ?? 0) + us);
    for (const l of new Set(chain)) inclusive.set(l, (inclusive.get(l) ?? 0) + us);
  }
  const share = (m: Map<string, number>): Map<string, number> =>
    new Map([...m].map(([k, v]) => [k, busy > 0 ? v / busy : 0]));
  return {
    busyMs: busy / 1000,
    self: [...share(self)].sort((a, b) => b[1] - a[1]),
    inclusive: share(inclusive),
  };
}
