/**
 * What a soak found: whether each daemon's memory or descriptors grew, the
 * CSV of every sample, and a picture of them over time (gnuplot, SVG).
 *
 * Growth is the least-squares slope over the second half of the run: the
 * first half holds the warm-up (JIT code, pools and tables filling up to
 * their working size, the first SAs and certificates), which is not a leak.
 * A metric grew when its slope exceeds its limit (GROWTH_LIMITS, or
 * SHORT_RUN_LIMITS for a short run; their reasons are written there and in
 * docs/soak.md), and, for descriptors and a short run's resident set, the
 * rise is not one that comes and goes or comes in one step (growth()).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe as describeResult, run } from '../../../test/helpers/process.ts';
import { isDropCounter, type DaemonSample } from './soak-sample.ts';

export interface Sample {
  /** Seconds since the traffic started. */
  t: number;
  daemons: Record<string, DaemonSample>;
  /** The traffic and churn so far (cumulative). */
  events: Record<string, number>;
}

export type GrowthMetric = 'heapUsedBytes' | 'rssBytes' | 'openFds';

/**
 * The slope, per minute, above which a metric counts as growing, in a run
 * of at least STEADY_MINUTES.
 *
 * - heap after a full collection, 128 KiB/min: 7.5 MiB an hour, 180 MiB a
 *   day, which would take a daemon of ~25 MiB of heap to its limit within
 *   days.
 * - resident set, 1 MiB/min: the allocator and V8 return memory to the
 *   system late and in large pieces, so the resident set steps by hundreds
 *   of KiB either way without any leak; a leak on the heap shows first in
 *   the heap's line, this one catches memory outside the heap (native
 *   buffers, the addon) that grows by more than 60 MiB an hour.
 * - open descriptors, 0.5/min: a descriptor lost per withdrawal (one a
 *   minute per host) or per traffic round (several a minute) exceeds it; a
 *   constant count has slope 0.
 */
export const GROWTH_LIMITS: Record<GrowthMetric, number> = {
  heapUsedBytes: 128 * 1024,
  rssBytes: 1024 * 1024,
  openFds: 0.5,
};

/**
 * The daemons' tables take minutes to reach their working size: leases
 * last 300 s, a returned block waits 120 s in quarantine, a certificate
 * stays on the CRL until it expires (6 minutes after it was issued here), a
 * TCP translation 120 s after its connection. Until then the heap after GC
 * rises by 0.1-0.4 MiB/min with no leak (docs/soak.md, figures). A run
 * shorter than STEADY_MINUTES has no second half past that, and is held to
 * SHORT_RUN_LIMITS instead, which still catch a leak of a few bytes per
 * packet (the soak forwards some 2500 packets a second) or of 100 KiB per
 * withdrawal or rekey (about ten a minute).
 */
export const STEADY_MINUTES = 10;
export const SHORT_RUN_LIMITS: Record<GrowthMetric, number> = {
  heapUsedBytes: 1024 * 1024,
  rssBytes: 4 * 1024 * 1024,
  openFds: 0.5,
};

export interface Growth {
  daemon: string;
  metric: GrowthMetric;
  /** Units per minute, over the second half. */
  slopePerMinute: number;
  limit: number;
  first: number;
  last: number;
  /**
   * A short run's resident set only: the slopes, per minute, of the first
   * and the second half of the window (halves()).
   */
  halvesPerMinute?: [number, number];
  grew: boolean;
}

/** Least-squares slope of y over x. */
export function slope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/**
 * The slopes of the two halves of a short run's window (undefined when one
 * half has fewer than two samples), to tell a resident set that rose
 * throughout from one that rose in one step.
 *
 * A leak outside the heap (native buffers, the addon) grows with the work
 * done, and the soak's work never pauses: packets, rekeys every 20 s, lease
 * churn every 10 s; in one minute it rises in both halves. A withdrawal
 * brings new IKE SAs, certificates and a burst of allocation whose pages
 * the allocator and V8 keep: the resident set steps up by 1-5 MiB within
 * seconds, then stays or sinks slowly. In a two-minute run the second
 * withdrawals fall at 90-105 s, in the window's second half, and that one
 * step tilts the window's line past SHORT_RUN_LIMITS (the peer at 89.6 MiB,
 * then 93-95, heap after GC flat: 5.7 MiB/min, in a run on a fresh machine)
 * while the first half stays flat. So each half must also rise, at half the
 * limit or more: half, because a line through half the samples is the
 * noisier one; a leak at the limit clears it in both halves, a flat half
 * does not come near it. One minute cannot tell a step from a leak of
 * megabytes per withdrawal; a long run keeps the plain slope and sees every
 * withdrawal repeated, with one step weighing little (5 MiB in a 15-minute
 * window tilts its line by at most 0.5 MiB/min).
 */
export function halves(points: readonly { x: number; y: number }[]): [number, number] | undefined {
  if (points.length < 4) return undefined;
  const mid = (points[0]!.x + points.at(-1)!.x) / 2;
  const first = points.filter((p) => p.x < mid);
  const second = points.filter((p) => p.x >= mid);
  if (first.length < 2 || second.length < 2) return undefined;
  return [slope(first), slope(second)];
}

/**
 * The verdicts for a run of `seconds`. Samples after it (the last one, once
 * the traffic has stopped) are left out: a quiet daemon is smaller, and the
 * line would tilt down.
 */
export function growth(samples: readonly Sample[], seconds: number): Growth[] {
  const during = samples.filter((s) => s.t <= seconds);
  if (during.length === 0) return [];
  const end = during.at(-1)!.t;
  const half = during.filter((s) => s.t >= end / 2);
  const short = end < STEADY_MINUTES * 60;
  const limits = short ? SHORT_RUN_LIMITS : GROWTH_LIMITS;
  const settled = samples.find((s) => s.t > seconds)?.daemons ?? {};
  const out: Growth[] = [];
  for (const daemon of Object.keys(samples[0]!.daemons))
    for (const metric of Object.keys(GROWTH_LIMITS) as GrowthMetric[]) {
      const points = half
        .filter((s) => s.daemons[daemon] !== undefined)
        .map((s) => ({ x: s.t / 60, y: s.daemons[daemon]![metric] }));
      const perMinute = slope(points);
      const limit = limits[metric];
      const first = points[0]?.y ?? NaN;
      const last = points.at(-1)?.y ?? NaN;
      const split = short && metric === 'rssBytes' ? halves(points) : undefined;
      out.push({
        daemon,
        metric,
        slopePerMinute: perMinute,
        limit,
        first,
        last,
        ...(split !== undefined && { halvesPerMinute: split }),
        // Descriptors come and go with control connections and traffic: a
        // sample taken during a withdrawal or a certificate request tilts a
        // short run's line without any leak, and so does one that happens to
        // be the window's last (45 descriptors, 47 at the end, in a run on a
        // loaded machine). A lost descriptor stays, so the count must also
        // end above the window's least: at the sample taken once the traffic
        // has stopped, when those connections are gone (the window's last
        // sample when there is none).
        grew:
          perMinute > limit &&
          (metric !== 'openFds' ||
            (settled[daemon]?.openFds ?? last) > Math.min(...points.map((p) => p.y))) &&
          // A short run's resident set: a rise in one step is not a leak (halves()).
          (split === undefined || split.every((h) => h > limit / 2)),
      });
    }
  return out;
}

/** Every sample as rows "seconds,source,metric,value": memory, descriptors, each counter, the traffic tally. */
export function writeCsv(file: string, samples: readonly Sample[]): void {
  const rows = ['seconds,source,metric,value'];
  for (const s of samples) {
    const t = s.t.toFixed(1);
    for (const [name, d] of Object.entries(s.daemons)) {
      rows.push(`${t},${name},rss_bytes,${d.rssBytes}`);
      rows.push(`${t},${name},heap_used_bytes,${d.heapUsedBytes}`);
      rows.push(`${t},${name},heap_total_bytes,${d.heapTotalBytes}`);
      rows.push(`${t},${name},external_bytes,${d.externalBytes}`);
      rows.push(`${t},${name},open_fds,${d.openFds}`);
      for (const [c, v] of Object.entries(d.counters)) rows.push(`${t},${name},counter:${c},${v}`);
    }
    for (const [e, v] of Object.entries(s.events)) rows.push(`${t},traffic,${e},${v}`);
  }
  writeFileSync(file, `${rows.join('\n')}\n`);
}

/** The samples of a CSV that writeCsv wrote. */
export function readCsv(file: string): Sample[] {
  const byTime = new Map<string, Sample>();
  const fields: Record<string, keyof DaemonSample> = {
    rss_bytes: 'rssBytes',
    heap_used_bytes: 'heapUsedBytes',
    heap_total_bytes: 'heapTotalBytes',
    external_bytes: 'externalBytes',
    open_fds: 'openFds',
  };
  for (const line of readFileSync(file, 'utf8').trim().split('\n').slice(1)) {
    const [t, source, metric, text] = line.split(',') as [string, string, string, string];
    const value = Number(text);
    let s = byTime.get(t);
    if (s === undefined) byTime.set(t, (s = { t: Number(t), daemons: {}, events: {} }));
    if (source === 'traffic') {
      s.events[metric] = value;
      continue;
    }
    const d = (s.daemons[source] ??= {
      rssBytes: 0,
      heapUsedBytes: 0,
      heapTotalBytes: 0,
      externalBytes: 0,
      openFds: 0,
      counters: {},
    });
    if (metric.startsWith('counter:')) d.counters[metric.slice('counter:'.length)] = value;
    else if (fields[metric] !== undefined) (d[fields[metric]] as number) = value;
  }
  return [...byTime.values()];
}

const MIB = 1024 * 1024;

/**
 * The picture: resident set, heap after collection, open descriptors and
 * drops (all reasons summed) of each daemon over time, one panel each, with
 * the withdrawals marked. gnuplot (Debian's gnuplot-nox) draws it from one
 * data file per daemon.
 */
export async function plot(
  dir: string,
  samples: readonly Sample[],
  withdrawals: readonly number[],
): Promise<string> {
  const daemons = Object.keys(samples[0]?.daemons ?? {});
  for (const name of daemons) {
    const lines = samples
      .filter((s) => s.daemons[name] !== undefined)
      .map((s) => {
        const d = s.daemons[name]!;
        const drops = Object.entries(d.counters)
          .filter(([c]) => isDropCounter(c))
          .reduce((sum, [, v]) => sum + v, 0);
        return [(s.t / 60).toFixed(3), d.rssBytes / MIB, d.heapUsedBytes / MIB, d.openFds, drops].join(' ');
      });
    writeFileSync(join(dir, `${name}.dat`), `${lines.join('\n')}\n`);
  }
  const svg = join(dir, 'soak.svg');
  const marks = withdrawals.map(
    (t, i) =>
      `set arrow ${i + 1} from first ${(t / 60).toFixed(3)}, graph 0 to first ${(t / 60).toFixed(3)}, graph 1 nohead lc rgb '#bbbbbb' dt 2`,
  );
  const panel = (title: string, col: number): string[] => [
    `set title '${title}'`,
    `plot ${daemons.map((d) => `'${join(dir, `${d}.dat`)}' using 1:${col} with linespoints pt 7 ps 0.4 title '${d}'`).join(', ')}`,
  ];
  const script = [
    `set terminal svg size 1200,860 dynamic background rgb 'white' font 'sans,11'`,
    `set output '${svg}'`,
    `set multiplot layout 2,2 title 'distnat soak (dashed lines: withdrawals)'`,
    `set xlabel 'minutes'`,
    `set key top left horizontal`,
    `set offsets 0, 0, graph 0.15, 0`,
    `set grid`,
    ...marks,
    ...panel('resident set (MiB)', 2),
    ...panel('heap after full GC (MiB)', 3),
    ...panel('open file descriptors', 4),
    ...panel('drops, all reasons (cumulative)', 5),
    'unset multiplot',
  ].join('\n');
  const file = join(dir, 'soak.gnuplot');
  writeFileSync(file, `${script}\n`);
  const r = await run(['gnuplot', file], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`gnuplot: ${describeResult(r)}`);
  return svg;
}
