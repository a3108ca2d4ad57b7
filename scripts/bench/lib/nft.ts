/**
 * nftables for the benchmarks: kernel NAT in the router (the baseline distnat
 * is compared with) and a counting sink in the server (the receiver of the
 * small-packet flood). Each lives in a table of its own, so removing it
 * removes exactly what was added.
 */
import { TOPOLOGY } from '../../lib/topology.ts';
import type { BenchTestbed } from './testbed.ts';
import { nftCounters } from './counters.ts';

const NAT_TABLE = 'bench_nat';
const SINK_TABLE = 'bench_sink';
/** The flood's destination port (discard). */
export const SINK_PORT = 9;

/**
 * Source NAT of the LAN to the shared address on the way out of the WAN: what
 * a NAT router would do for the same hosts. snat to the shared address
 * rather than masquerade to the WAN address keeps every packet on the WAN
 * identical to distnat's (and the server's route to 198.51.100.30 serves
 * both); the kernel's per-packet work is the same (conntrack lookup, rewrite
 * of address and port with incremental checksum updates).
 */
export async function setUpNat(bed: BenchTestbed, wanIf = TOPOLOGY.wanIf): Promise<void> {
  await tearDownNat(bed);
  const rules = [
    `table ip ${NAT_TABLE} {`,
    '  chain post {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    oifname "${wanIf}" ip saddr ${TOPOLOGY.lanNet} counter snat to ${TOPOLOGY.shared} comment "snat"`,
    '  }',
    '}',
  ].join('\n');
  await bed.exec('router', ['nft', '-f', '-'], { input: rules });
}

export async function tearDownNat(bed: BenchTestbed): Promise<void> {
  // With the last NAT rule gone the namespace's conntrack hooks go too
  // (nf_ct_netns_put), so later measurements pay nothing for it.
  await bed.try('router', ['nft', 'delete', 'table', 'ip', NAT_TABLE]);
}

/**
 * Counts and drops the flood where it enters the server, before conntrack
 * and before any socket: the receiver then costs next to nothing and cannot
 * itself be the bottleneck.
 */
export async function setUpSink(bed: BenchTestbed, wanIf = TOPOLOGY.wanIf): Promise<void> {
  await bed.try('server', ['nft', 'delete', 'table', 'inet', SINK_TABLE]);
  const rules = [
    `table inet ${SINK_TABLE} {`,
    '  chain pre {',
    '    type filter hook prerouting priority raw - 10; policy accept;',
    `    iifname "${wanIf}" udp dport ${SINK_PORT} counter drop comment "flood"`,
    '  }',
    '}',
  ].join('\n');
  await bed.exec('server', ['nft', '-f', '-'], { input: rules });
}

/** Flood packets the server has received so far. */
export async function sinkCount(bed: BenchTestbed): Promise<number> {
  return (await nftCounters(bed.ns('server'), 'inet', SINK_TABLE)).get('flood') ?? 0;
}
