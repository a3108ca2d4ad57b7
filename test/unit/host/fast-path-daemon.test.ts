/**
 * The agent's choice of data path (src/host/daemon/fast-path.ts) where no
 * BPF is needed: which cases never open the programs and what they say, the
 * one warning when the programs cannot be had, and the FIG. 11 observer's
 * conversion of the kernel's stamps to the table's clock.
 */
import { describe, expect, it } from 'vitest';
import { openHostDataPath, translationObserver } from '../../../src/host/daemon/fast-path.ts';
import { HostLeases } from '../../../src/pap/host-leases.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { hostConfig, memoryLogger } from './agent-rig.ts';

function open(config: Record<string, unknown>, lanInterface: string | undefined) {
  const clock = new FakeClock(1_700_000_000_000);
  const { log, lines } = memoryLogger();
  const leases = new HostLeases({ clock });
  const dataPath = openHostDataPath({
    config: hostConfig(config),
    sharedAddress: 0xc633641e,
    lanAddress: 0x0a000001,
    routerAddress: 0x0a000007,
    lanInterface,
    tunMtu: 1480,
    lanMtu: 1500,
    ipsec: false,
    leases,
    clock,
    log,
  });
  return { dataPath, lines };
}

describe("the host agent's data path", () => {
  it('datapath: tun never opens the programs, and says nothing', () => {
    const { dataPath, lines } = open({ datapath: 'tun' }, 'lan0');
    expect(dataPath.fast).toBeUndefined();
    expect(dataPath.observer).toBeUndefined();
    expect(dataPath.describe()).toBe('TUN (datapath: tun)');
    expect(lines).toEqual([]);
  });

  it('devices given by the caller: no programs', () => {
    const { dataPath, lines } = open({}, undefined);
    expect(dataPath.fast).toBeUndefined();
    expect(dataPath.describe()).toBe('TUN (devices given by the caller)');
    expect(lines).toEqual([]);
  });

  it('a capture turns them off, with one warning', () => {
    const { dataPath, lines } = open({ pcap: '/tmp/x.pcap' }, 'lan0');
    expect(dataPath.fast).toBeUndefined();
    expect(dataPath.describe()).toBe('TUN (pcap)');
    expect(lines.map((l) => l.level)).toEqual(['warn']);
  });

  it('programs that cannot be had are one warning, and the agent forwards alone', () => {
    const { dataPath, lines } = open({}, 'no-such-if0');
    expect(dataPath.fast).toBeUndefined();
    expect(dataPath.describe()).toMatch(/^TUN \(eBPF unavailable: /);
    expect(lines).toHaveLength(1);
    expect(lines[0]!.level).toBe('warn');
    expect(lines[0]!.message).toMatch(/^eBPF data path unavailable \(.+\): .*; forwarding in the agent$/);
    dataPath.close();
  });
});

describe('the FIG. 11 observer', () => {
  it('hands rows over and takes them back as they are', () => {
    const calls: string[] = [];
    const o = translationObserver(
      {
        addTranslation: (p, l, x) => calls.push(`add ${p} ${l} ${x}`),
        removeTranslation: (p, l, x) => calls.push(`remove ${p} ${l} ${x}`),
        lastUseNs: () => 0,
      },
      new FakeClock(0),
    );
    o.established(17, 40000, 1030);
    o.removed(17, 40000, 1030);
    expect(calls).toEqual(['add 17 40000 1030', 'remove 17 40000 1030']);
  });

  it("puts the kernel's last use on the table's clock; never used is -Infinity", () => {
    const clock = new FakeClock(1_700_000_000_000);
    let stamp = 0;
    const o = translationObserver(
      { addTranslation: () => {}, removeTranslation: () => {}, lastUseNs: () => stamp },
      clock,
      () => 5_000_000, // the kernel's monotonic clock now, ms
    );
    expect(o.lastUse(17, 1030)).toBe(-Infinity);
    stamp = (5_000_000 - 1500) * 1e6; // 1.5 s ago
    expect(o.lastUse(17, 1030)).toBe(1_700_000_000_000 - 1500);
    // A stamp a hair ahead of the clock read (another CPU) is now, not the future.
    stamp = (5_000_000 + 1) * 1e6;
    expect(o.lastUse(17, 1030)).toBe(1_700_000_000_000);
  });
});
