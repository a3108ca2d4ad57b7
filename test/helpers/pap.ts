/**
 * PAP seen from outside distnat, for the namespace tests of leases:
 *
 * - a PAP client in Python written from docs/pap.md alone (its own encoder,
 *   checksum and parser), run as extra LAN hosts from the testbed's `lan`
 *   namespace, to ask for blocks, renew, flood and so on;
 * - the PAP exchanges of a capture, decoded by tshark with the project's
 *   dissector (wireshark/pap.lua), and from them who held which values when:
 *   a host holds a block from a success answering its request or renew until
 *   the lease in it runs out, or earlier when it gives the block back, is
 *   told it lost it, or the router withdraws it;
 * - the blocks every daemon's status lists, router and hosts alike.
 */
import { join } from 'node:path';
import type { ResourceKind } from '../../src/util/block.ts';
import { ROOT } from '../../scripts/lib/testbed/layout.ts';
import { TOPOLOGY } from '../../scripts/lib/topology.ts';
import type { DaemonStatus } from './distnat.ts';
import { PYTHON, findTable, writeScript } from './distnat.ts';
import { describe as describeResult, run } from './process.ts';
import type { Testbed } from './testbed.ts';

export const PAP_CLIENT_PY = String.raw`
"""A PAP client from docs/pap.md: one exchange per line of JSON on argv, answers as JSON lines."""
import json, select, socket, struct, sys, time

def checksum(b):
    s = sum((b[i] << 8) | b[i + 1] for i in range(0, len(b), 2))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def build(a):
    t = 32 if a['kind'] == 'port' else 33
    body = bytearray(8)
    op = a['op']
    if op == 'request':
        code = 1 if a.get('high') else 0
        if t == 32: body[0] = a.get('count', 0)
        else: struct.pack_into('!H', body, 0, a.get('count', 0))
    elif op == 'invalidate':
        code = 2
        struct.pack_into('!H' if t == 32 else '!I', body, 0, a['value'])
    else:
        code = 3
        struct.pack_into('!HB' if t == 32 else '!IH', body, 0, a['lowest'], a['count'])
    if t == 32 and a.get('address'):
        body[4:8] = socket.inet_aton(a['address'])
    m = bytearray(struct.pack('!BBH', t, code, 0) + bytes(body) +
                  struct.pack('!BBHIII', 1, 0, 0, a['txid'], a.get('epoch', 0), a.get('lease', 0)))
    struct.pack_into('!H', m, 2, checksum(m))
    return bytes(m)

def parse(b):
    if len(b) != 28 or checksum(b) != 0 or b[12] != 1:
        return None
    t, code = b[0], b[1]
    _v, flags, status, txid, epoch, lease = struct.unpack_from('!BBHIII', b, 12)
    address = None
    if t == 32:
        lowest, count = struct.unpack_from('!HB', b, 4)
        if b[8:12] != bytes(4):
            address = socket.inet_ntoa(b[8:12])
    elif code in (0, 1):
        count, _u, lowest = struct.unpack_from('!HHI', b, 4)
    else:
        lowest, count = struct.unpack_from('!IH', b, 4)
    return {'kind': 'port' if t == 32 else 'spi', 'response': bool(flags & 0x80), 'code': code,
            'success': code == 1, 'status': status, 'txid': txid, 'epoch': epoch, 'lease': lease,
            'lowest': lowest, 'count': count, 'address': address, 't': time.time()}

src, router = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
txid = int(time.time() * 1000) & 0x7fffffff

def answers(until, want):
    got = []
    while len(got) < want:
        if not select.select([s], [], [], max(0, until - time.time()))[0]:
            if time.time() >= until:
                break
            continue
        r = parse(s.recv(2048))
        if r is not None and r['response']:
            got.append(r)
    return got

for line in sys.argv[3:]:
    a = json.loads(line)
    if a['op'] == 'flood':
        # n requests, each a new transaction, 'gap' seconds apart; answers read as they come.
        first, got = txid + 1, []
        for i in range(a['n']):
            txid += 1
            s.sendto(build(dict(a, op='request', txid=txid)), (router, 7032))
            got += answers(time.time() + a.get('gap', 0), 10 ** 9)
        got += answers(time.time() + a.get('wait', 3), a['n'] - len(got))
        got = [r for r in got if first <= r['txid'] <= txid]
        print(json.dumps({'op': 'flood', 'sent': a['n'], 'answers': got}), flush=True)
        continue
    txid += 1
    m = build(dict(a, txid=txid))
    r = None
    for attempt in range(a.get('attempts', 3)):
        s.sendto(m, (router, 7032))
        for x in answers(time.time() + 1.0, 1):
            if x['txid'] == txid:
                r = x
        if r is not None:
            break
    print(json.dumps({'op': a['op'], 'asked': a, 'txid': txid, 'answer': r}), flush=True)
`;

/** One PAP answer as the Python client decoded it. */
export interface PapAnswer {
  kind: ResourceKind;
  success: boolean;
  status: number;
  txid: number;
  epoch: number;
  lease: number;
  lowest: number;
  count: number;
  /** Ports: the shared address the answer names; null for none (the router's first). */
  address: string | null;
  /** Unix time in seconds. */
  t: number;
}

export type PapAsk =
  | {
      op: 'request';
      kind: ResourceKind;
      count?: number;
      /** Ports: the shared address to lease on; absent: none named (the router's first). */
      address?: string;
      high?: boolean;
      epoch?: number;
      lease?: number;
      attempts?: number;
    }
  | { op: 'renew'; kind: ResourceKind; lowest: number; count: number; epoch?: number; lease?: number }
  | { op: 'invalidate'; kind: ResourceKind; value: number; epoch?: number }
  | { op: 'flood'; kind: ResourceKind; n: number; count?: number; gap?: number; wait?: number };

export interface PapReply {
  op: string;
  txid: number;
  answer: PapAnswer | null;
}

export interface FloodReply {
  op: 'flood';
  sent: number;
  answers: PapAnswer[];
}

/**
 * Extra LAN hosts for a test: addresses on the LAN bridge in the `lan`
 * namespace (the testbed's switch), which no daemon uses.
 */
export async function addLanHosts(bed: Testbed, addresses: readonly string[]): Promise<void> {
  for (const a of addresses) {
    const r = await bed.exec('lan', [
      'ip',
      'addr',
      'add',
      `${a}/${TOPOLOGY.lanPrefixLen}`,
      'dev',
      TOPOLOGY.bridge,
    ]);
    if (r.code !== 0) throw new Error(`adding ${a} in ${bed.ns('lan')}: ${describeResult(r)}`);
  }
}

/** Runs the Python client from `src` (an address of addLanHosts) with these exchanges in turn, with `router`. */
export async function papExchange(
  bed: Testbed,
  src: string,
  asks: readonly PapAsk[],
  router: string = TOPOLOGY.router.lan,
): Promise<(PapReply | FloodReply)[]> {
  const script = writeScript(bed, 'pap-client.py', PAP_CLIENT_PY);
  const r = await bed.exec('lan', [PYTHON, script, src, router, ...asks.map((a) => JSON.stringify(a))], {
    timeoutMs: 60_000,
  });
  if (r.code !== 0) throw new Error(`PAP client at ${src}: ${describeResult(r)}`);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as PapReply | FloodReply);
}

/** One PAP message of a capture, as the dissector decodes it. */
export interface PapPacket {
  frame: number;
  /** Unix time, ms. */
  t: number;
  src: string;
  dst: string;
  kind: string;
  fromRouter: boolean;
  success: boolean;
  status: number;
  txid: number;
  epoch: number;
  lease: number;
  /** The block of a response, renew or withdraw; the value of an invalidate (count 0). */
  lowest: number;
  count: number;
}

const FIELDS = [
  'frame.number',
  'frame.time_epoch',
  'ip.src',
  'ip.dst',
  'dnpap.kind',
  'dnpap.response',
  'dnpap.success',
  'dnpap.status',
  'dnpap.txid',
  'dnpap.epoch',
  'dnpap.lease',
  'dnpap.ports.lowest',
  'dnpap.ports.count',
  'dnpap.spi.lowest',
  'dnpap.spi.count',
  'dnpap.port',
  'dnpap.spi',
];

/** The PAP messages of a capture file, decoded by wireshark/pap.lua. */
export async function papPackets(file: string): Promise<PapPacket[]> {
  const argv = [
    'tshark',
    '-X',
    `lua_script:${join(ROOT, 'wireshark', 'pap.lua')}`,
    '-r',
    file,
    '-Y',
    'dnpap',
  ];
  argv.push('-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=f');
  for (const f of FIELDS) argv.push('-e', f);
  // A private HOME keeps the user's own Wireshark preferences and plugins out.
  const r = await run(argv, { timeoutMs: 60_000, env: { ...process.env, HOME: '/nonexistent' } });
  if (r.code !== 0) throw new Error(`tshark -r ${file}: ${describeResult(r)}`);
  const num = (v: string | undefined): number => (v === undefined || v === '' ? 0 : Number(v));
  return r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((line) => {
      const c = line.split('\t');
      const kind = c[4]!;
      const port = kind.startsWith('port');
      const invalidate = kind.endsWith('invalidate');
      return {
        frame: num(c[0]),
        t: Math.round(Number(c[1]) * 1000),
        src: c[2]!,
        dst: c[3]!,
        kind,
        fromRouter: c[5] === '1' || c[5] === 'True',
        success: c[6] === '1' || c[6] === 'True',
        status: num(c[7]),
        txid: num(c[8]),
        epoch: num(c[9]),
        lease: num(c[10]),
        lowest: invalidate ? num(port ? c[15] : c[16]) : num(port ? c[11] : c[13]),
        count: invalidate ? 0 : num(port ? c[12] : c[14]),
      };
    });
}

/** A stretch of time during which a host may have used a block, as the wire tells it. */
export interface Holding {
  host: string;
  kind: ResourceKind;
  lowest: number;
  count: number;
  epoch: number;
  /** Unix ms: the answer that granted, renewed or reclaimed it. */
  from: number;
  /** Unix ms: when its lease ran out, or it was given back, refused or withdrawn. */
  to: number;
  /** How the stretch ended. */
  end: 'expired' | 'released' | 'refused' | 'withdrawn' | 'open';
}

/**
 * Who held which values when, from the router's answers matched to the
 * hosts' messages by host and transaction id. A renew answered with success
 * extends (or, with a new epoch, reclaims) the holding; a failure answering
 * a renew of the block, a success answering an invalidate of it and a
 * withdraw end it. `until` closes holdings still running at the end of the
 * capture.
 */
export function holdings(packets: readonly PapPacket[], until: number): Holding[] {
  const asked = new Map<string, PapPacket>();
  const open = new Map<string, Holding>();
  const done: Holding[] = [];
  const kindOf = (p: PapPacket): ResourceKind => (p.kind.startsWith('port') ? 'port' : 'spi');
  const key = (host: string, kind: ResourceKind, lowest: number) => `${host} ${kind} ${lowest}`;
  const close = (h: Holding, at: number, end: Holding['end']) => {
    open.delete(key(h.host, h.kind, h.lowest));
    done.push({ ...h, to: Math.min(h.to, at), end: at < h.to ? end : 'expired' });
  };
  const sweep = (now: number) => {
    for (const h of [...open.values()]) if (h.to <= now) close(h, h.to, 'expired');
  };
  for (const p of packets) {
    sweep(p.t);
    if (!p.fromRouter) {
      asked.set(`${p.src} ${p.txid}`, p);
      continue;
    }
    const kind = kindOf(p);
    if (p.kind.endsWith('withdraw')) {
      const h = open.get(key(p.dst, kind, p.lowest));
      if (h !== undefined) close(h, p.t, 'withdrawn');
      continue;
    }
    const q = asked.get(`${p.dst} ${p.txid}`);
    if (q === undefined || kindOf(q) !== kind) continue;
    const op = q.kind.split('-')[1];
    if (op === 'request' || op === 'renew') {
      const name = op === 'renew' ? q : p;
      const h = open.get(key(p.dst, kind, name.lowest));
      if (p.success) {
        if (h !== undefined) close(h, p.t, 'expired');
        open.set(key(p.dst, kind, p.lowest), {
          host: p.dst,
          kind,
          lowest: p.lowest,
          count: p.count,
          epoch: p.epoch,
          from: p.t,
          to: p.t + p.lease * 1000,
          end: 'open',
        });
      } else if (op === 'renew' && h !== undefined && h.count === q.count) {
        close(h, p.t, 'refused');
      }
    } else if (op === 'invalidate' && p.success) {
      const h = open.get(key(p.dst, kind, p.lowest));
      if (h !== undefined) close(h, q.t, 'released');
    }
  }
  sweep(until);
  for (const h of [...open.values()]) done.push({ ...h, to: Math.min(h.to, until), end: 'open' });
  return done.sort((a, b) => a.from - b.from);
}

/** Pairs of holdings of different hosts that share a value at the same time: must be none. */
export function sharedHoldings(hs: readonly Holding[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < hs.length; i++)
    for (let j = i + 1; j < hs.length; j++) {
      const a = hs[i]!;
      const b = hs[j]!;
      if (a.host === b.host || a.kind !== b.kind) continue;
      const values = a.lowest < b.lowest + b.count && b.lowest < a.lowest + a.count;
      const time = a.from < b.to && b.from < a.to;
      if (values && time) out.push(`${holdingText(a)} and ${holdingText(b)}`);
    }
  return out;
}

export const holdingText = (h: Holding): string =>
  `${h.host} ${h.kind} ${h.lowest}+${h.count} (epoch ${h.epoch.toString(16)}) ` +
  `${new Date(h.from).toISOString().slice(11, 23)}-${new Date(h.to).toISOString().slice(11, 23)} ${h.end}`;

/** A block someone lists: the router's tables name the host, a host's own list names itself. */
export interface ListedBlock {
  source: string;
  host: string;
  kind: ResourceKind;
  first: number;
  last: number;
}

/** The router's FIG. 8 and FIG. 21 rows. */
export function routerBlocks(status: DaemonStatus): ListedBlock[] {
  const rows = (title: string, kind: ResourceKind) =>
    findTable(status, title).rows.map(([host, lowest, count]) => ({
      source: 'router',
      host: String(host),
      kind,
      first: Number(lowest),
      last: Number(lowest) + Number(count) - 1,
    }));
  return [...rows('FIG. 8', 'port'), ...rows('FIG. 21', 'spi')];
}

/** The blocks a host agent believes it holds (its "Leased blocks" table). */
export function hostBlocks(status: DaemonStatus): ListedBlock[] {
  const host = String(status.summary['lan address']);
  return findTable(status, 'Leased blocks').rows.map((r) => {
    const [first, last] = String(r[1]).split('-').map(Number);
    return { source: host, host, kind: r[0] === 'port' ? 'port' : 'spi', first: first!, last: last! };
  });
}

/** Pairs of listed blocks of different hosts that share a value. */
export function sharedBlocks(blocks: readonly ListedBlock[]): string[] {
  const out: string[] = [];
  const text = (b: ListedBlock) => `${b.host} ${b.kind} ${b.first}-${b.last} (per ${b.source})`;
  for (let i = 0; i < blocks.length; i++)
    for (let j = i + 1; j < blocks.length; j++) {
      const a = blocks[i]!;
      const b = blocks[j]!;
      if (a.host !== b.host && a.kind === b.kind && a.first <= b.last && b.first <= a.last)
        out.push(`${text(a)} and ${text(b)}`);
    }
  return out;
}
