/**
 * ICMP errors find the program that caused them. A UDP datagram from h1
 * (and, at the same time, from h2) to a closed port on the server comes back
 * as "port unreachable" for 198.51.100.30; the router can only tell whose it
 * is from the datagram quoted inside the error (its source port, leased to
 * one host), and the host agent must translate the quoted port back to the
 * program's local port, or the kernel would not find the socket. The
 * program sees ECONNREFUSED. The same for "time exceeded" made by the
 * router's own kernel for a datagram sent with TTL 1.
 *
 * On both data paths in one testbed: first the default, where the router's
 * eBPF program sees each error from the WAN and leaves it to the TUN path,
 * then with the router and the agents restarted on `datapath: tun`, with no
 * fast-path counter.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { HostNode, Leases } from '../helpers/distnat.ts';
import {
  DATA_PATHS,
  HOSTS,
  PYTHON,
  counter,
  fastPathCounters,
  inBlocks,
  readStatus,
  restartDaemonsOn,
  waitForLeases,
  writeScript,
} from '../helpers/distnat.ts';
import { describe as describeResult } from '../helpers/process.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed();
const SERVER = TOPOLOGY.server.wan;
const CLOSED_PORT = 9999;

/** An ordinary connected UDP socket: send, then recv; prints how it ended. */
const PLAIN = `
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
s.settimeout(1.0)
outcome = 'timeout'
for attempt in range(8):
    s.send(b'anyone there?')
    try:
        s.recv(2048)
        outcome = 'answered'
        break
    except ConnectionRefusedError:
        outcome = 'refused'
        break
    except socket.timeout:
        continue
print(json.dumps({'local': s.getsockname()[1], 'outcome': outcome}))
`;

/** The same with IP_RECVERR: the error's type, code, offender and the quoted payload from the error queue. */
const RECVERR = `
import json, select, socket, struct, sys
IP_RECVERR = 11
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, int(sys.argv[3]))
s.connect((sys.argv[1], int(sys.argv[2])))
out = {'local': s.getsockname()[1]}
for attempt in range(8):
    s.send(b'probe-' + sys.argv[4].encode())
    if not select.select([s], [], [], 1.0)[0]:
        continue
    try:
        data, anc, flags, _ = s.recvmsg(2048, 512, socket.MSG_ERRQUEUE)
    except BlockingIOError:
        continue
    for level, kind, d in anc:
        if level == socket.IPPROTO_IP and kind == IP_RECVERR:
            errno_, origin, itype, code = struct.unpack('=IBBB', d[:7])
            out.update(errno=errno_, origin=origin, type=itype, code=code,
                       offender=socket.inet_ntoa(d[20:24]), quoted=data.decode('latin-1'))
    break
print(json.dumps(out))
`;

interface ErrQueue {
  local: number;
  errno?: number;
  origin?: number;
  type?: number;
  code?: number;
  offender?: string;
  quoted?: string;
}

describe.for(DATA_PATHS)('ICMP errors reach the program that caused them, datapath: %s', (datapath) => {
  let leases: Leases;

  beforeAll(async () => {
    if (datapath === 'tun') await restartDaemonsOn(bed(), 'tun');
    leases = await waitForLeases(bed());
  }, 120_000);

  async function run<T>(node: HostNode, name: string, script: string, args: string[]): Promise<T> {
    const b = bed();
    const r = await b.exec(node, [PYTHON, writeScript(b, name, script), ...args], { timeoutMs: 30_000 });
    expect(r.code, describeResult(r)).toBe(0);
    return JSON.parse(r.stdout.trim()) as T;
  }

  it('port unreachable from the server: ECONNREFUSED on h1 and h2 at once; the server quoted leased ports', async () => {
    const b = bed();
    const before = await readStatus(b, 'router');
    const wan = await b.capture('server', TOPOLOGY.wanIf, { filter: 'icmp' });
    const results = await Promise.all(
      HOSTS.map((n) =>
        run<{ local: number; outcome: string }>(n, 'plain.py', PLAIN, [SERVER, String(CLOSED_PORT)]),
      ),
    );
    expect(results.map((r) => r.outcome)).toEqual(['refused', 'refused']);
    await wan.stop({ packets: 2 });
    // What the server sent: port unreachable to 198.51.100.30, quoting each host's leased source port.
    // ip.dst occurs twice, the error's and the quoted datagram's.
    const rows = await wan.fields(['ip.dst', 'icmp.type', 'icmp.code', 'udp.srcport', 'udp.dstport']);
    const quoted = rows.map((r) => {
      expect(r.slice(0, 3)).toEqual([`${TOPOLOGY.shared},${SERVER}`, '3', '3']);
      expect(r[4]).toBe(String(CLOSED_PORT));
      return Number(r[3]);
    });
    for (const node of HOSTS)
      expect(
        quoted.some((p) => inBlocks(p, leases[node])),
        `an error quoting one of ${node}'s ports in ${quoted.join(', ')}`,
      ).toBe(true);
    // None of the errors was sent to a host that did not own the quoted port.
    const after = await readStatus(b, 'router');
    expect(counter(after, 'drop.no-owner')).toBe(counter(before, 'drop.no-owner'));
    expect(counter(after, 'drop.icmp-error-not-ours')).toBe(counter(before, 'drop.icmp-error-not-ours'));
    if (datapath === 'ebpf')
      // The program saw both errors and left them to the TUN path, which finds the quoted port's owner.
      expect(
        counter(after, 'fastpath.pass.wan.icmp') - counter(before, 'fastpath.pass.wan.icmp'),
      ).toBeGreaterThanOrEqual(2);
    else expect(fastPathCounters(after)).toEqual({});
  });

  it("the error in h1's socket error queue names the server and quotes the program's own datagram", async () => {
    const e = await run<ErrQueue>('h1', 'recverr.py', RECVERR, [SERVER, String(CLOSED_PORT), '64', 'h1']);
    expect(e).toMatchObject({
      errno: 111, // ECONNREFUSED
      origin: 2, // SO_EE_ORIGIN_ICMP
      type: 3,
      code: 3,
      offender: SERVER,
      quoted: 'probe-h1',
    });
  });

  it("time exceeded from the router's own kernel (TTL 1) reaches h2's program", async () => {
    const e = await run<ErrQueue>('h2', 'recverr.py', RECVERR, [SERVER, String(CLOSED_PORT), '1', 'h2']);
    expect(e).toMatchObject({ errno: 113, origin: 2, type: 11, code: 0, quoted: 'probe-h2' }); // EHOSTUNREACH
    expect([TOPOLOGY.router.lan, TOPOLOGY.router.wan]).toContain(e.offender);
  });
});
