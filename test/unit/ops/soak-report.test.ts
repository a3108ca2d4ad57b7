/**
 * The soak's verdicts on descriptors (a leak stays after the traffic, a
 * control connection open at the moment of a sample does not) and on a
 * short run's resident set (a leak rises throughout, the pages a withdrawal
 * took come in one step).
 */
import { describe, expect, it } from 'vitest';
import { growth, STEADY_MINUTES, type Sample } from '../../../scripts/bench/lib/soak-report.ts';

type DaemonSample = Sample['daemons'][string];

/**
 * Samples every 5 s over `seconds` of traffic (two minutes unless told),
 * then one 5 s later once it has stopped, as the soak takes them; the
 * router's descriptors are `fds(t)` and its resident set `rss(t)`.
 */
function run(fds: (t: number) => number, rss: (t: number) => number = () => 90e6, seconds = 120): Sample[] {
  const out: Sample[] = [];
  for (let t = 0; t <= seconds + 5; t += 5) {
    const router: DaemonSample = {
      rssBytes: rss(t),
      heapUsedBytes: 20e6,
      heapTotalBytes: 30e6,
      externalBytes: 1e6,
      openFds: fds(t),
      counters: {},
    };
    out.push({ t, daemons: { router }, events: {} });
  }
  return out;
}

const fdVerdict = (samples: Sample[]) => growth(samples, 120).find((g) => g.metric === 'openFds')!;

/** Connections open at some samples, as in the run that showed it: two at the window's last. */
const transient: Record<number, number> = { 70: 1, 75: 1, 100: 2, 105: 2, 120: 2 };

describe('soak growth of open descriptors', () => {
  it('is flat when connections come and go, even one open at the last sample of the traffic', () => {
    const v = fdVerdict(run((t) => 45 + (t < 125 ? (transient[t] ?? 0) : 0)));
    expect(v.slopePerMinute).toBeGreaterThan(v.limit);
    expect(v.grew).toBe(false);
  });

  it('grows when one descriptor a minute is lost among the same comings and goings', () => {
    const v = fdVerdict(run((t) => 45 + Math.floor(t / 60) + (t < 125 ? (transient[t] ?? 0) : 0)));
    expect(v.grew).toBe(true);
  });

  it('is flat for a constant count', () => {
    expect(fdVerdict(run(() => 45)).grew).toBe(false);
  });
});

const MIB = 1024 * 1024;
const rssVerdict = (samples: Sample[], seconds = 120) =>
  growth(samples, seconds).find((g) => g.metric === 'rssBytes')!;
/** The wobble of a resident set that holds still: 100 KiB up and back every other sample. */
const wobble = (t: number): number => (t % 10 === 5 ? 0.1 : 0);

/**
 * The peer's resident set in the two-minute run that showed it (MiB): 89.6
 * until the withdrawals at 96 s and 103 s (new IKE SAs and certificates),
 * then 93-95 to the end, with its heap after GC flat.
 */
const stepped: Record<number, number> = { 100: 92.6, 105: 94.6, 110: 93.8, 115: 94.9, 120: 93.8, 125: 93.8 };
const afterWithdrawals = (t: number): number => (stepped[t] ?? 89.6 + wobble(t)) * MIB;

describe('soak growth of the resident set', () => {
  it('is flat when it steps up once at the withdrawals and stays there, though its slope is above the limit', () => {
    const v = rssVerdict(run(() => 45, afterWithdrawals));
    // The slope alone, the rule before, calls this growth.
    expect(v.slopePerMinute).toBeGreaterThan(v.limit);
    expect(v.halvesPerMinute![0]).toBeLessThan(v.limit / 2);
    expect(v.grew).toBe(false);
  });

  it('grows when it rises by as much, evenly, over the same minute', () => {
    const leak = (t: number): number => (89.6 + (4.2 * Math.max(0, t - 60)) / 60 + wobble(t)) * MIB;
    const total = (s: Sample[]) => s.at(-2)!.daemons['router']!.rssBytes - s[12]!.daemons['router']!.rssBytes;
    expect(total(run(() => 45, leak))).toBeCloseTo(total(run(() => 45, afterWithdrawals)), -3);
    const v = rssVerdict(run(() => 45, leak));
    expect(v.grew).toBe(true);
  });

  it('grows when it steps up again and again, once in each half of the minute', () => {
    const steps = (t: number): number =>
      (89.6 + (t >= 70 ? 2.2 : 0) + (t >= 100 ? 2.2 : 0) + wobble(t)) * MIB;
    expect(rssVerdict(run(() => 45, steps)).grew).toBe(true);
  });

  it('is judged by its slope alone in a long run, even when it rose in one step', () => {
    const seconds = (STEADY_MINUTES + 2) * 60;
    // 20 MiB at once, three quarters through: enough to tilt the line of a six-minute window past its limit.
    const v = rssVerdict(
      run(
        () => 45,
        (t) => (90 + (t >= seconds * 0.75 ? 20 : 0)) * MIB,
        seconds,
      ),
      seconds,
    );
    expect(v.halvesPerMinute).toBeUndefined();
    expect(v.grew).toBe(true);
  });
});
