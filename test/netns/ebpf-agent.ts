/**
 * The router's eBPF fast path (RouterFastPath) in a process of its own, for
 * the namespace tests: run in the router's namespace beside (or instead of)
 * `distnat router`, it attaches the programs and takes commands, one JSON
 * object per connection on a Unix socket (which crosses namespaces):
 *
 *   node --import tsx test/netns/ebpf-agent.ts --socket S --shared A --lan-address A
 *        --lan-if lan0 --wan-if wan0 --tun dn0 [--hook tc|xdp] [--heartbeat-ms 1000] [--grace-ms 10000]
 *
 *   {"cmd":"add"|"remove","host":"10.0.0.1","kind":"port"|"spi","first":N,"count":N} -> {"result":...}
 *   {"cmd":"withdrawn","ranges":[{"first":N,"end":N},...]} -> {"result":"synced"}   the withdrawn SPIs, whole
 *   {"cmd":"counters"} -> {"counters":{...}}   flat names (FastPathCounters.flat)
 *   {"cmd":"stamp","protocol":17,"port":N}    -> {"ns":N}
 *   {"cmd":"sa","remote":"203.0.113.3","protocol":50,"spi":N} -> {"host":N}
 *   {"cmd":"info"} -> {"programIds":[...],"memory":{...},"active":bool,"rssBytes":N}
 *   {"cmd":"stats-on"} turns on the kernel's per-program run time; {"cmd":"programs"} -> {"programs":[...]}
 *   {"cmd":"close"} detaches, replies, exits 0
 *
 * Prints `ready` once attached; a failure to start prints the error and exits 1.
 */
import { createServer } from 'node:net';
import { rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { enableBpfStats } from '../../src/io/bpf.ts';
import { RouterFastPath } from '../../src/router/data-path/ebpf/fast-path.ts';
import { ipv4FromString } from '../../src/wire/ipv4.ts';

const { values } = parseArgs({
  options: {
    socket: { type: 'string' },
    shared: { type: 'string' },
    'lan-address': { type: 'string' },
    'lan-if': { type: 'string', default: 'lan0' },
    'wan-if': { type: 'string', default: 'wan0' },
    tun: { type: 'string', default: 'dn0' },
    hook: { type: 'string', default: 'tc' },
    'heartbeat-ms': { type: 'string', default: '1000' },
    'grace-ms': { type: 'string', default: '10000' },
  },
});

const addr = (s: string | undefined): number => {
  const a = ipv4FromString(s ?? '');
  if (a === undefined) throw new Error(`not an IPv4 address: ${s}`);
  return a;
};

let fast: RouterFastPath;
try {
  fast = RouterFastPath.open({
    // --shared A[,B...]: several shared addresses, in order.
    sharedAddresses: (values.shared ?? '').split(',').map(addr),
    lanAddress: addr(values['lan-address']),
    lanInterface: values['lan-if'],
    wanInterface: values['wan-if'],
    tunInterface: values.tun,
    hook: values.hook === 'xdp' ? 'xdp' : 'tc',
    heartbeatMs: Number(values['heartbeat-ms']),
    graceMs: Number(values['grace-ms']),
    onFailure: (e) => console.error(`fast path failed: ${e.message}`),
  });
} catch (e) {
  console.error(`${(e as Error).name}: ${(e as Error).message}`);
  process.exit(1);
}

let stopStats: (() => void) | undefined;

interface Command {
  cmd: string;
  host?: string;
  kind?: 'port' | 'spi';
  first?: number;
  count?: number;
  protocol?: number;
  port?: number;
  remote?: string;
  spi?: number;
  ranges?: { first: number; end: number }[];
}

function handle(c: Command): unknown {
  switch (c.cmd) {
    case 'add':
    case 'remove': {
      const block = { host: addr(c.host), kind: c.kind ?? 'port', first: c.first ?? 0, count: c.count ?? 0 };
      return { result: c.cmd === 'add' ? fast.onLeaseAdded(block) : fast.onLeaseRemoved(block) };
    }
    case 'withdrawn':
      return { result: fast.onSpisWithdrawn(c.ranges ?? []) };
    case 'counters':
      return { counters: fast.counters.flat() };
    case 'stamp':
      return { ns: fast.lastSeen.stampNs(c.protocol ?? 0, c.port ?? 0) };
    case 'sa':
      return { host: fast.sas.ownerOf(addr(c.remote), c.protocol ?? 0, c.spi ?? 0) };
    case 'info':
      globalThis.gc?.();
      return {
        heapBytes: process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers,
        programIds: fast.programIds(),
        memory: fast.mapMemory(),
        active: fast.active,
        rssBytes: process.memoryUsage().rss,
      };
    case 'stats-on':
      stopStats ??= enableBpfStats();
      return { ok: true };
    case 'programs':
      return { programs: fast.programInfo() };
    default:
      return { error: `unknown command ${c.cmd}` };
  }
}

const socket = values.socket ?? '';
rmSync(socket, { force: true });
const server = createServer((conn) => {
  let text = '';
  conn.on('data', (d) => {
    text += d.toString('utf8');
    const nl = text.indexOf('\n');
    if (nl < 0) return;
    let reply: unknown;
    let close = false;
    try {
      const c = JSON.parse(text.slice(0, nl)) as Command;
      close = c.cmd === 'close';
      if (close) fast.close();
      reply = close ? { closed: true } : handle(c);
    } catch (e) {
      reply = { error: (e as Error).message };
    }
    conn.end(`${JSON.stringify(reply)}\n`, () => {
      if (!close) return;
      server.close();
      rmSync(socket, { force: true });
      process.exit(0);
    });
  });
});
server.listen(socket, () => console.log('ready'));
process.on('SIGTERM', () => {
  fast.close();
  rmSync(socket, { force: true });
  process.exit(0);
});
