/**
 * The soak's verdict on descriptors: a leak stays after the traffic, a
 * control connection open at the moment of a sample does not.
 */
import { describe, expect, it } from 'vitest';
import { growth, type Sample } from '../../../scripts/bench/lib/soak-report.ts';

type DaemonSample = Sample['daemons'][string];

/**
 * Samples every 5 s over two minutes of traffic, then one at 125 s once it
 * has stopped, as the soak takes them; the router's descriptors are `fds(t)`.
 */
function run(fds: (t: number) => number): Sample[] {
  const out: Sample[] = [];
  for (let t = 0; t <= 125; t += 5) {
    const router: DaemonSample = {
      rssBytes: 90e6,
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
