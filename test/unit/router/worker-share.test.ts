/**
 * The LAN share filters of the forwarding workers (worker-share.ts), run
 * through a classic BPF interpreter on IP-in-IP built with the wire codec:
 * every datagram is taken by exactly one worker, one flow always by the same,
 * every fragment and everything odd by worker 0, and the flows spread. The
 * kernel's own run of the filters is in test/netns/router-workers.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeBpf, workerShareFilter } from '../../../src/router/data-path/worker-share.ts';
import { runBpf } from './classic-bpf.ts';
import { echo, esp, fragment, ip, SERVER, SHARED, tcp, tunnel, udp } from './forwarder-packets.ts';

/** Which workers of `n` take `pkt`. */
function takers(n: number, pkt: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) if (runBpf(workerShareFilter(i, n), pkt) !== 0) out.push(i);
  return out;
}

const host = fc.integer({ min: 0x0a00_0001, max: 0x0a00_fffe });
const port = fc.integer({ min: 1, max: 65535 });

describe('worker share filters', () => {
  it('one flow (host, inner source port) is taken by exactly one worker, whatever else changes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 8 }),
        host,
        port,
        fc.array(fc.record({ dport: port, data: fc.integer({ min: 0, max: 200 }), tcp: fc.boolean() }), {
          minLength: 1,
          maxLength: 6,
        }),
        (n, h, sport, packets) => {
          const shares = new Set<number>();
          for (const p of packets) {
            const inner = p.tcp
              ? tcp(SHARED, sport, SERVER, p.dport, p.data)
              : udp(SHARED, sport, SERVER, p.dport, p.data);
            const t = takers(n, tunnel(h, inner));
            expect(t.length).toBe(1);
            shares.add(t[0]!);
          }
          // TCP and UDP from one source port hash alike: the port, not the protocol, keys the share.
          expect(shares.size).toBe(1);
        },
      ),
    );
  });

  it('every fragment of a datagram, first or later, goes to worker 0', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 8 }), host, port, (n, h, sport) => {
        const whole = udp(SHARED, sport, SERVER, 53, 600);
        for (const f of fragment(whole, [256, 512])) expect(takers(n, tunnel(h, f))).toEqual([0]);
        const big = tcp(SHARED, sport, SERVER, 80, 900);
        for (const f of fragment(big, [400])) expect(takers(n, tunnel(h, f))).toEqual([0]);
      }),
    );
  });

  it('what the hash cannot read goes to worker 0: truncated, outer options, short packets', () => {
    for (const n of [2, 3, 4]) {
      const whole = tunnel(0x0a00_0001, udp(SHARED, 40000, SERVER, 53));
      // Cut inside the inner UDP header: the port is not all there.
      expect(takers(n, whole.subarray(0, 41))).toEqual([0]);
      expect(takers(n, whole.subarray(0, 30))).toEqual([0]);
      expect(takers(n, whole.subarray(0, 1))).toEqual([0]);
      const withOptions = new Uint8Array(whole.length + 4);
      withOptions.set(whole.subarray(0, 20));
      withOptions[0] = 0x46;
      withOptions.set(whole.subarray(20), 24);
      expect(takers(n, withOptions)).toEqual([0]);
    }
  });

  it('ICMP, ESP and protocols without ports follow the host alone', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 8 }), host, fc.integer({ min: 0, max: 65535 }), (n, h, id) => {
        const a = takers(n, tunnel(h, echo(SHARED, SERVER, 'echo-request', id)));
        const b = takers(n, tunnel(h, esp(SHARED, SERVER, 0x1000 + id)));
        const c = takers(n, tunnel(h, ip(SHARED, SERVER, 47 /* GRE */, new Uint8Array(8))));
        expect(a.length).toBe(1);
        expect(b).toEqual(a);
        expect(c).toEqual(a);
      }),
    );
  });

  it('flows spread over the workers', () => {
    const n = 4;
    const count = new Array<number>(n).fill(0);
    for (let sport = 1024; sport < 1024 + 4000; sport++)
      count[takers(n, tunnel(0x0a00_0001, udp(SHARED, sport, SERVER, 53)))[0]!]!++;
    for (const c of count) expect(c).toBeGreaterThan(4000 / n / 2);
  });

  it('encodes struct sock_filter: 8 bytes each, code, jt, jf, k', () => {
    const prog = workerShareFilter(1, 2);
    const bytes = encodeBpf(prog);
    expect(bytes.length).toBe(prog.length * 8);
    const v = new DataView(bytes.buffer);
    const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
    prog.forEach((p, i) => {
      expect(v.getUint16(i * 8, le)).toBe(p.code);
      expect(bytes[i * 8 + 2]).toBe(p.jt);
      expect(bytes[i * 8 + 3]).toBe(p.jf);
      expect(v.getUint32(i * 8 + 4, le)).toBe(p.k);
    });
    expect(() => workerShareFilter(2, 2)).toThrow(RangeError);
    expect(() => workerShareFilter(0, 1)).toThrow(RangeError);
  });
});
