/**
 * 10^5 malformed and truncated packets (scapy's fuzz() and damaged valid
 * datagrams, scripts/fuzz/corpus.py) sent with tcpreplay into the router
 * from the WAN, from h1's address and from a stranger on the LAN, and into
 * h1's agent from the router's side and from its TUN: `npm run fuzz` at a
 * tenth of its size (scripts/fuzz/run.ts, which builds and removes its own
 * testbed). Every packet sent must be forwarded or dropped with a reason,
 * exactly: a drop path that stops counting, or a packet counted twice,
 * breaks a sum. Afterwards the daemons are the same processes, answer
 * status, and forward a valid datagram both ways.
 *
 * On both data paths in one testbed, the router and the agents on the same
 * one: the default, where the router's eBPF programs see every packet from
 * the LAN and the WAN first, then `datapath: tun`, where no fast-path
 * counter exists and every refused packet is counted by the TUN path.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { MalformedVolume, type FuzzResult, type StreamResult } from '../../scripts/fuzz/run.ts';

const PACKETS = 100_000;
const DATA_PATHS = ['ebpf', 'tun'] as const;

const results = new Map<string, FuzzResult>();

beforeAll(async () => {
  const lines: string[] = [];
  const each = await new MalformedVolume({
    packets: PACKETS,
    pps: 25_000,
    seed: 15,
    log: (line) => lines.push(line),
  }).runOn(DATA_PATHS);
  DATA_PATHS.forEach((d, i) => results.set(d, each[i]!));
}, 600_000);

const reasons = (s: StreamResult): string[] => Object.keys(s.drops).filter((k) => s.drops[k]! > 0);

describe.for(DATA_PATHS)('malformed packets at volume, datapath: %s', (datapath) => {
  let result: FuzzResult;
  const stream = (name: string): StreamResult => {
    const s = result.streams.find((x) => x.name === name);
    if (s === undefined) throw new Error(`no stream ${name}`);
    return s;
  };

  beforeAll(() => {
    result = results.get(datapath)!;
  });

  it('sends every packet of the corpus, into each of the five places', () => {
    expect(result.streams.map((s) => s.name)).toEqual([
      'wan',
      'lan-host',
      'lan-stranger',
      'host-tunnel',
      'host-tun',
    ]);
    // What tcpreplay could not send (a full queue under load) never left it.
    expect(result.streams.reduce((a, s) => a + s.sent + s.failed, 0)).toBe(PACKETS);
    for (const s of result.streams) expect(s.sent, s.name).toBeGreaterThan(s.failed * 100);
  });

  it('accounts for every packet: sent = forwarded + dropped by reason, per stream', () => {
    for (const s of result.streams) {
      const why = `${s.name}: read ${s.read}, forwarded ${s.forwarded}, dropped ${JSON.stringify(s.drops)}`;
      expect(s.forwarded + s.dropped, why).toBe(s.sent);
    }
  });

  it.runIf(datapath === 'ebpf')(
    'runs the eBPF fast path, which saw every packet and passed on exactly what the slow path read, the kernel dropped and a full queue lost',
    () => {
      expect(result.dataPath).toMatch(/^eBPF/);
      expect(result.hostDataPath).toMatch(/^eBPF/);
      for (const name of ['wan', 'lan-host', 'lan-stranger']) {
        const s = stream(name);
        expect({ name, seen: s.fastSeen }).toEqual({ name, seen: s.sent });
        expect({ name, passed: s.fastPassed }).toEqual({
          name,
          passed: s.slowRead! + s.kernelDropped! + s.queueDropped!,
        });
      }
      // From the WAN the kernel checks the header first; from the LAN the outer header is sound.
      expect(stream('wan').kernelDropped).toBeGreaterThan(0);
      expect(stream('lan-host').kernelDropped).toBe(0);
      // h1's programs saw the streams into it first and left them to the agent.
      for (const name of ['host-tunnel', 'host-tun'])
        expect(
          Object.keys(stream(name).deltas).filter((k) => k.startsWith('fastpath.pass.')),
          name,
        ).not.toEqual([]);
    },
  );

  it.runIf(datapath === 'tun')(
    'runs the TUN path alone: no fast-path counter moved, in the router or in h1',
    () => {
      expect(result.dataPath).toBe('TUN (datapath: tun)');
      expect(result.hostDataPath).toBe('TUN (datapath: tun)');
      for (const s of result.streams) {
        expect(s.fastSeen, s.name).toBeUndefined();
        expect(
          Object.keys(s.deltas).filter((k) => k.startsWith('fastpath.')),
          s.name,
        ).toEqual([]);
      }
      // From the WAN the kernel still checks the header before the TUN.
      expect(stream('wan').drops['kernel:Ip.InHdrErrors'] ?? 0).toBeGreaterThan(0);
    },
  );

  it('drops for many different reasons and forwards the sound share', () => {
    for (const name of ['wan', 'lan-host', 'host-tunnel', 'host-tun']) {
      expect(stream(name).forwarded, name).toBeGreaterThan(0);
      expect(
        reasons(stream(name)).length,
        `${name}: ${reasons(stream(name)).join(' ')}`,
      ).toBeGreaterThanOrEqual(5);
    }
    // A stranger holds nothing: nothing of it goes anywhere.
    expect(stream('lan-stranger').forwarded).toBe(0);
    expect(stream('lan-stranger').drops['no-lease']).toBeGreaterThan(0);
  });

  it('never fails in the fast path: a padded datagram or one with bytes past its length is forwarded', () => {
    // The corpus appends junk to a tenth of the datagrams; from the WAN those
    // for a leased port were dropped as fastpath-error while the program trimmed
    // after marking the packet encapsulated.
    for (const s of result.streams) expect(s.drops['fastpath-error'] ?? 0, s.name).toBe(0);
  });

  it('leaves the same processes running, answering status and forwarding a valid datagram both ways', () => {
    expect(result.restarted).toEqual([]);
    expect(result.pids.after).toEqual(result.pids.before);
    expect(result.silent).toEqual([]);
    expect(result.validForwarded).toBe(true);
  });
});
