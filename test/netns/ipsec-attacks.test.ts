/**
 * Hostile ESP from the WAN through distnat, injected with scapy in the
 * server's namespace (frames built from a real ESP packet the server sent
 * to 198.51.100.30 for h1):
 *
 * - the same packet again is refused by h1 as a replay and counted;
 * - the packet with one bit flipped, under a fresh sequence number (far
 *   ahead, and the next one), fails its ICV and is counted, and neither
 *   moves h1's replay window: fresh traffic afterwards is accepted, and
 *   h1's accepted count does not move for the injected packets;
 * - an SPI nobody leased is dropped by the router as no-owner and reaches
 *   no host;
 * - an SPI from h2's block goes to h2 (which refuses it) and never to h1.
 *
 * On both data paths in the same namespaces, router and agents on the same
 * one: the default, where the router's eBPF program takes each injected
 * packet first (it tunnels the owned SPIs itself and leaves the unleased one
 * to the TUN path, `fastpath.pass.wan.no-owner`), then with all of them
 * started again on `datapath: tun`, with no fast-path counter.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { DaemonStatus, HostNode } from '../helpers/distnat.ts';
import {
  DATA_PATHS,
  HOSTS,
  PYTHON,
  counter,
  fastPathCounters,
  ipv4Of,
  pseudoRandomBytes,
  readPcapng,
  readStatus,
  sha256,
  sha256File,
  writeScript,
} from '../helpers/distnat.ts';
import type { IpsecDaemons } from '../helpers/ipsec.ts';
import { KEYS, ipsecCounter, startIpsecDaemons, stopIpsecDaemons } from '../helpers/ipsec.ts';
import { describe as describeResult, sleep, waitUntil } from '../helpers/process.ts';
import type { HttpServer } from '../helpers/servers.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const SERVER = TOPOLOGY.server.wan;
const FILE = pseudoRandomBytes(64 * 1024, 0xa77ac4);
/** h1's and h2's inbound ESP AES-GCM SAs (ipsec-keys.ts: the first inbound SPI of each block). */
const H1_SPI = KEYS.h1.inSpi;
const H2_SPI = KEYS.h2.inSpi;
const UNLEASED_SPI = 0x3000;

const INJECT_PY = `
import sys
from scapy.all import conf, sendp, Raw
conf.verb = 0
iface = sys.argv[1]
for h in sys.argv[2:]:
    sendp(Raw(bytes.fromhex(h)), iface=iface)
print('sent', len(sys.argv) - 2, flush=True)
`;

const ETH = 14;
const IP = 20;
/** Offsets in an Ethernet frame carrying ESP (no IP options). */
const SPI_AT = ETH + IP;
const SEQ_AT = ETH + IP + 4;

/** Sum of a status's counters starting with `prefix`. */
function sum(s: DaemonStatus, prefix: string): number {
  return Object.entries(s.counters)
    .filter(([k]) => k.startsWith(prefix))
    .reduce((a, [, v]) => a + v, 0);
}

let http: HttpServer;
let daemons: IpsecDaemons | undefined;

beforeAll(async () => {
  http = await bed().httpServer('server', {
    port: KEYS.h1.base + 1,
    bind: SERVER,
    files: { 'file.bin': FILE },
  });
});

/** What the router's eBPF program did with the injected packets: `fastpath.*` deltas (none exist on tun). */
const fastDelta = (before: DaemonStatus, after: DaemonStatus, name: string): number =>
  counter(after, `fastpath.${name}`) - counter(before, `fastpath.${name}`);

describe.for(DATA_PATHS)('replayed, forged and misdirected ESP through distnat, datapath: %s', (datapath) => {
  /** The last ESP frame (highest sequence number) the server sent h1 on its GCM SA. */
  let last: Buffer;
  let top: number;

  const inject = async (frames: Buffer[]): Promise<void> => {
    const b = bed();
    const script = writeScript(b, 'inject.py', INJECT_PY);
    const r = await b.exec(
      'server',
      [PYTHON, script, TOPOLOGY.wanIf, ...frames.map((f) => f.toString('hex'))],
      {
        timeoutMs: 30_000,
      },
    );
    expect(r.code, describeResult(r)).toBe(0);
  };

  const statuses = async (): Promise<Record<'router' | HostNode, DaemonStatus>> => {
    const b = bed();
    const [router, h1, h2] = await Promise.all([
      readStatus(b, 'router'),
      readStatus(b, 'h1'),
      readStatus(b, 'h2'),
    ]);
    return { router, h1, h2 };
  };

  /** Waits until `ready` holds of fresh statuses, then a little more so late arrivals would show too. */
  const settle = async (
    what: string,
    ready: (s: Record<'router' | HostNode, DaemonStatus>) => boolean,
  ): Promise<Record<'router' | HostNode, DaemonStatus>> => {
    let s = await statuses();
    await waitUntil(
      what,
      async () => {
        s = await statuses();
        return ready(s);
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    await sleep(300);
    return statuses();
  };

  const curlH1 = async (): Promise<void> => {
    const b = bed();
    const file = join(b.scratchDir, `h1-${Date.now()}.bin`);
    const r = await b.exec(
      'h1',
      ['curl', '-sS', '--max-time', '20', '-o', file, http.url(SERVER, 'file.bin')],
      {
        timeoutMs: 30_000,
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(await sha256File(file)).toBe(sha256(FILE));
  };

  beforeAll(async () => {
    const b = bed();
    if (daemons !== undefined) await stopIpsecDaemons(b, daemons);
    daemons = await startIpsecDaemons(b, { datapath });
    const capture = await b.capture('server', TOPOLOGY.wanIf, {
      filter: `ip proto 50 and dst host ${TOPOLOGY.shared}`,
    });
    await curlH1();
    await capture.stop();
    const frames = readPcapng(capture.file)
      .map((f) => f.data)
      .filter((f) => {
        const ip = ipv4Of({ linkType: 1, time: 0, data: f });
        return ip !== undefined && ip[9] === 50 && (ip[0]! & 15) === 5 && f.readUInt32BE(SPI_AT) === H1_SPI;
      });
    expect(frames.length).toBeGreaterThan(20);
    last = frames.reduce((a, f) => (f.readUInt32BE(SEQ_AT) > a.readUInt32BE(SEQ_AT) ? f : a));
    top = last.readUInt32BE(SEQ_AT);
  }, 90_000);

  it('a replayed packet is dropped by h1 as a replay; nothing is accepted', async () => {
    const before = await statuses();
    const r0 = ipsecCounter(before.h1, 'ipsec.inbound.replay');
    await inject([last]);
    const after = await settle(
      'h1 to count the replay',
      (s) => ipsecCounter(s.h1, 'ipsec.inbound.replay') > r0,
    );
    expect(ipsecCounter(after.h1, 'ipsec.inbound.replay') - r0).toBe(1);
    expect(ipsecCounter(after.h1, 'ipsec.inbound.accepted')).toBe(
      ipsecCounter(before.h1, 'ipsec.inbound.accepted'),
    );
    expect(sum(after.h2, 'ipsec.inbound.')).toBe(sum(before.h2, 'ipsec.inbound.'));
  });

  it('a flipped bit under fresh sequence numbers fails the ICV, is counted, and leaves the window where it was', async () => {
    const forged = [top + 1000, top + 1].map((seq) => {
      const f = Buffer.from(last);
      f.writeUInt32BE(seq, SEQ_AT);
      f[f.length - 30]! ^= 0x04; // in the ciphertext
      return f;
    });
    const before = await statuses();
    const a0 = ipsecCounter(before.h1, 'ipsec.inbound.auth-failed');
    await inject(forged);
    const after = await settle(
      'h1 to count two ICV failures',
      (s) => ipsecCounter(s.h1, 'ipsec.inbound.auth-failed') >= a0 + 2,
    );
    expect(ipsecCounter(after.h1, 'ipsec.inbound.auth-failed') - a0).toBe(2);
    for (const c of ['accepted', 'replay', 'too-old'])
      expect(ipsecCounter(after.h1, `ipsec.inbound.${c}`), c).toBe(
        ipsecCounter(before.h1, `ipsec.inbound.${c}`),
      );

    // Had the window moved to top + 1000, every packet of a new download would be too old.
    await curlH1();
    const fresh = await statuses();
    expect(ipsecCounter(fresh.h1, 'ipsec.inbound.accepted')).toBeGreaterThan(
      ipsecCounter(after.h1, 'ipsec.inbound.accepted') + 40,
    );
    for (const c of ['too-old', 'replay', 'auth-failed'])
      expect(ipsecCounter(fresh.h1, `ipsec.inbound.${c}`), c).toBe(
        ipsecCounter(after.h1, `ipsec.inbound.${c}`),
      );
  }, 60_000);

  it('an SPI nobody leased is dropped by the router (no-owner) and reaches no host', async () => {
    const f = Buffer.from(last);
    f.writeUInt32BE(UNLEASED_SPI, SPI_AT);
    const before = await statuses();
    const n0 = counter(before.router, 'drop.no-owner');
    await inject([f]);
    const after = await settle(
      'the router to count no-owner',
      (s) => counter(s.router, 'drop.no-owner') > n0,
    );
    expect(counter(after.router, 'drop.no-owner') - n0).toBe(1);
    expect(counter(after.router, 'traffic.inbound-packets')).toBe(
      counter(before.router, 'traffic.inbound-packets'),
    );
    if (datapath === 'ebpf') expect(fastDelta(before.router, after.router, 'pass.wan.no-owner')).toBe(1);
    else expect(fastPathCounters(after.router)).toEqual({});
    for (const node of HOSTS)
      expect(sum(after[node], 'ipsec.inbound.'), node).toBe(sum(before[node], 'ipsec.inbound.'));
  });

  it("an SPI of h2's block sent to the shared address reaches h2 only, never h1", async () => {
    const f = Buffer.from(last);
    f.writeUInt32BE(H2_SPI, SPI_AT);
    f.writeUInt32BE(0x7fff0000, SEQ_AT); // fresh for h2's SA, so it gets as far as the ICV
    const before = await statuses();
    const a0 = ipsecCounter(before.h2, 'ipsec.inbound.auth-failed');
    await inject([f]);
    const after = await settle(
      'h2 to refuse the packet',
      (s) => ipsecCounter(s.h2, 'ipsec.inbound.auth-failed') > a0,
    );
    expect(ipsecCounter(after.h2, 'ipsec.inbound.auth-failed') - a0).toBe(1);
    expect(sum(after.h2, 'ipsec.inbound.') - sum(before.h2, 'ipsec.inbound.')).toBe(1);
    expect(sum(after.h1, 'ipsec.inbound.')).toBe(sum(before.h1, 'ipsec.inbound.'));
    expect(
      counter(after.router, 'traffic.inbound-packets') - counter(before.router, 'traffic.inbound-packets'),
    ).toBe(1);
    expect(counter(after.router, 'drop.no-owner')).toBe(counter(before.router, 'drop.no-owner'));
    if (datapath === 'ebpf')
      expect(fastDelta(before.router, after.router, 'traffic.inbound-packets')).toBe(1);
    else expect(fastPathCounters(after.router)).toEqual({});
  });
});
