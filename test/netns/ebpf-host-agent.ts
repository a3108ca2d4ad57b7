/**
 * The host's eBPF fast path (HostFastPath) in a process of its own, for the
 * namespace tests: run in a host's namespace, it attaches the programs to
 * dn0 and lan0 and takes commands, one JSON object per connection on a Unix
 * socket:
 *
 *   node --import tsx test/netns/ebpf-host-agent.ts --socket S --mode native|translate
 *        --shared A --lan-address A --router A [--lan-if lan0] [--tun dn0]
 *
 *   {"cmd":"lease"|"unlease","first":N,"count":N}
 *   {"cmd":"translate"|"untranslate","protocol":17,"local":N,"leased":N}
 *   {"cmd":"counters"} -> {"counters":{...}}
 *   {"cmd":"last-use","protocol":17,"leased":N} -> {"ns":N}
 *
 * Prints `ready` once attached.
 */
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';
import { HostFastPath } from '../../src/host/data-path/ebpf/host-fast-path.ts';
import { ipv4FromString } from '../../src/wire/ipv4.ts';

const { values } = parseArgs({
  options: {
    socket: { type: 'string' },
    mode: { type: 'string', default: 'native' },
    shared: { type: 'string' },
    'lan-address': { type: 'string' },
    router: { type: 'string' },
    'lan-if': { type: 'string', default: 'lan0' },
    tun: { type: 'string', default: 'dn0' },
  },
});
const addr = (s: string | undefined): number => {
  const a = ipv4FromString(s ?? '');
  if (a === undefined) throw new Error(`not an IPv4 address: ${s}`);
  return a;
};

let fast: HostFastPath;
try {
  fast = HostFastPath.open({
    sharedAddress: addr(values.shared),
    lanAddress: addr(values['lan-address']),
    routerAddress: addr(values.router),
    lanInterface: values['lan-if'],
    tunInterface: values.tun,
    mode: values.mode === 'translate' ? 'translate' : 'native',
    onFailure: (e) => console.error(`fast path failed: ${e.message}`),
  });
} catch (e) {
  console.error(`${(e as Error).name}: ${(e as Error).message}`);
  process.exit(1);
}

interface Command {
  cmd: string;
  first?: number;
  count?: number;
  protocol?: number;
  local?: number;
  leased?: number;
}

function handle(c: Command): unknown {
  switch (c.cmd) {
    case 'lease':
      fast.onLeaseAdded({ kind: 'port', first: c.first ?? 0, count: c.count ?? 0 });
      return { ok: fast.failure === undefined };
    case 'unlease':
      fast.onLeaseRemoved({ kind: 'port', first: c.first ?? 0, count: c.count ?? 0 });
      return { ok: fast.failure === undefined };
    case 'translate':
      fast.addTranslation(c.protocol ?? 0, c.local ?? 0, c.leased ?? 0);
      return { ok: fast.failure === undefined };
    case 'untranslate':
      fast.removeTranslation(c.protocol ?? 0, c.local ?? 0, c.leased ?? 0);
      return { ok: fast.failure === undefined };
    case 'counters':
      return { counters: fast.counters() };
    case 'last-use':
      return { ns: fast.lastUseNs(c.protocol ?? 0, c.leased ?? 0) };
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
    try {
      reply = handle(JSON.parse(text.slice(0, nl)) as Command);
    } catch (e) {
      reply = { error: (e as Error).message };
    }
    conn.end(`${JSON.stringify(reply)}\n`);
  });
});
server.listen(socket, () => console.log('ready'));
process.on('SIGTERM', () => {
  fast.close();
  server.close();
  rmSync(socket, { force: true });
  process.exit(0);
});
