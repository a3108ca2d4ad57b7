import { describe, expect, it } from 'vitest';
import { Iaptt, DEFAULT_IAPTT_IDLE, protocolSlot } from '../../../src/router/data-path/tables/iaptt.ts';

const H1 = 0x0a000001;
const H3 = 0x0a000003;
const TCP = 6;
const UDP = 17;
const ICMP = 1;

describe('Iaptt (FIG. 12)', () => {
  it('records Table 9: port 1032 -> 10.0.0.1, TCP, stamped on use', () => {
    const t = new Iaptt();
    t.touch(TCP, 1032, H1, 10_000);
    t.touch(TCP, 1032, H1, 10_048);
    expect(t.hostOf(TCP, 1032)).toBe(H1);
    expect(t.lastUse(TCP, 1032)).toBe(10_048);
    expect(t.hostOf(UDP, 1032)).toBe(0);
    expect(t.lastUse(UDP, 1032)).toBe(-1);
    expect(t.size).toBe(1);
    expect(t.rows()).toEqual([
      { port: 1032, addressIndex: 0, host: H1, address: '10.0.0.1', protocol: TCP, lastUse: 10_048 },
    ]);
  });

  it('keeps TCP, UDP and ICMP rows of one port apart and ignores other protocols', () => {
    const t = new Iaptt();
    t.touch(TCP, 2000, H1, 1);
    t.touch(UDP, 2000, H3, 2);
    t.touch(ICMP, 2000, H1, 3);
    t.touch(50, 2000, H1, 4);
    t.touch(TCP, 2001, 0, 4);
    expect(t.size).toBe(3);
    expect(t.hostOf(UDP, 2000)).toBe(H3);
    expect(protocolSlot(50)).toBe(-1);
    expect(t.hostOf(50, 2000)).toBe(0);
    expect(t.remove(UDP, 2000)).toBe(true);
    expect(t.remove(UDP, 2000)).toBe(false);
    expect(t.size).toBe(2);
  });

  it('sweeps each protocol at its own idle time, a bounded slice per call', () => {
    const t = new Iaptt();
    t.touch(TCP, 1100, H1, 0);
    t.touch(UDP, 1100, H1, 0);
    t.touch(ICMP, 1100, H1, 0);
    const full = 3 * 65536;
    // Exactly at the idle time nothing goes; the limits are "at least".
    expect(t.sweep(DEFAULT_IAPTT_IDLE.icmpMs, full)).toBe(0);
    expect(t.sweep(DEFAULT_IAPTT_IDLE.icmpMs + 1, full)).toBe(1);
    expect(t.hostOf(ICMP, 1100)).toBe(0);
    expect(t.sweep(DEFAULT_IAPTT_IDLE.udpMs + 1, full)).toBe(1);
    expect(t.hostOf(TCP, 1100)).toBe(H1);
    // A small budget needs several calls to reach the TCP plane's row.
    let removed = 0;
    let calls = 0;
    while (removed === 0 && calls < 1000) {
      removed += t.sweep(DEFAULT_IAPTT_IDLE.tcpMs + 1, 1000);
      calls++;
    }
    expect(removed).toBe(1);
    expect(calls).toBeGreaterThan(1);
    expect(t.size).toBe(0);
  });

  it('clears a withdrawn block, only for the host that held it', () => {
    const t = new Iaptt();
    t.touch(TCP, 3000, H1, 0);
    t.touch(UDP, 3001, H1, 0);
    t.touch(UDP, 3002, H3, 0);
    t.touch(UDP, 3100, H1, 0);
    expect(t.clearPorts(3000, 32, H1)).toBe(2);
    expect(t.hostOf(UDP, 3002)).toBe(H3);
    expect(t.hostOf(UDP, 3100)).toBe(H1);
    expect(t.clearPorts(3000, 32)).toBe(1);
    expect(t.size).toBe(1);
  });
});
