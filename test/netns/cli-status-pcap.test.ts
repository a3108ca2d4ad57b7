/**
 * What an operator looks at: `distnat status` prints the live tables as
 * aligned columns and `--json` for scripts, and `--pcap FILE` on the router
 * and a host records both directions of what they forward. The testbed runs a
 * router and h1 from a process table of this file's own, with --pcap.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/control/client.ts';
import { DISTNAT } from '../helpers/distnat.ts';
import { run, waitUntil } from '../helpers/process.ts';
import { TOPOLOGY, Testbed, uniquePrefix } from '../helpers/testbed.ts';

const dir = mkdtempSync(join(tmpdir(), 'distnat-cli-pcap-'));
const SERVER = TOPOLOGY.server.wan;
let bed: Testbed;

beforeAll(async () => {
  const table = join(dir, 'daemons');
  writeFileSync(
    table,
    [
      `router router bin/distnat router --shared-address ${TOPOLOGY.shared} --lan-address ${TOPOLOGY.router.lan}` +
        ` --tun dn0 --fresh --state-dir ${dir}/router/state --run-dir ${dir}/router --pcap ${dir}/router.pcap`,
      `h1 h1 bin/distnat host --router ${TOPOLOGY.router.lan} --lan-address ${TOPOLOGY.h1.lan}` +
        ` --shared-address ${TOPOLOGY.shared} --tun dn0 --state-dir ${dir}/h1/state --run-dir ${dir}/h1` +
        ` --pcap ${dir}/h1.pcap`,
      '',
    ].join('\n'),
  );
  bed = await Testbed.up({ prefix: uniquePrefix(), daemonsFile: table });
  await waitUntil(
    'h1 forwarding',
    async () => {
      try {
        const r = await controlRequest(join(dir, 'h1', 'host.sock'), { command: 'status' }, 2000);
        return r.ok && (r.status as { summary: Record<string, unknown> }).summary['forwarding'] === 'yes';
      } catch {
        return false;
      }
    },
    { timeoutMs: 40_000, intervalMs: 200 },
  );
  const ping = await bed.ping('h1', SERVER, { count: 3 });
  expect(ping.received, ping.output).toBe(3);
}, 90_000);

afterAll(async () => {
  await bed?.down();
  rmSync(dir, { recursive: true, force: true });
});

/** Column start offsets of a header line whose columns are separated by two or more spaces. */
function columnStarts(header: string): number[] {
  return [...header.matchAll(/\S+(?: \S+)*/g)].map((m) => m.index);
}

describe('distnat status against running daemons', () => {
  it('prints the FIG. 8 table with every row aligned under its header', async () => {
    const r = await bed.exec('router', [DISTNAT, 'status', 'router', '--run-dir', join(dir, 'router')], {
      timeoutMs: 30_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    const title = lines.findIndex((l) => l.startsWith('FIG. 8'));
    expect(title, r.stdout).toBeGreaterThanOrEqual(0);
    const header = lines[title + 1]!;
    expect(header).toMatch(/^INTERNAL NETWORK ADDRESS\s{2,}LOWEST PORT\s{2,}NUMBER OF PORTS/);
    const starts = columnStarts(header);
    const rows = lines.slice(title + 3, lines.indexOf('', title));
    expect(rows.length, r.stdout).toBe(1);
    for (const row of rows) {
      expect(row.startsWith(TOPOLOGY.h1.lan), row).toBe(true);
      for (const at of starts.slice(1)) {
        expect(row[at - 1], `${row} | column at ${at}`).toBe(' ');
        expect(row[at], `${row} | column at ${at}`).not.toBe(' ');
      }
    }
  });

  it('--json is the same status as data: summary, tables with columns and rows, counters', async () => {
    const r = await bed.exec('h1', [DISTNAT, 'status', 'host', '--run-dir', join(dir, 'h1'), '--json'], {
      timeoutMs: 30_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as {
      role: string;
      summary: Record<string, unknown>;
      tables: { title: string; columns: string[]; rows: unknown[][] }[];
      counters: Record<string, number>;
    };
    expect(s.role).toBe('host');
    expect(s.summary['forwarding']).toBe('yes');
    const leases = s.tables.find((t) => t.title.startsWith('Leased blocks'));
    expect(leases?.rows.length).toBe(1);
    for (const t of s.tables) for (const row of t.rows) expect(row).toHaveLength(t.columns.length);
    expect(Object.values(s.counters).every((v) => typeof v === 'number')).toBe(true);
  });
});

describe('--pcap', () => {
  beforeAll(async () => {
    // SIGTERM through the testbed: the daemons flush and close their captures.
    await bed.script(['down']);
  }, 60_000);

  async function icmpTypes(file: string): Promise<Set<string>> {
    const r = await run(['tshark', '-r', file, '-Y', 'icmp', '-T', 'fields', '-e', 'icmp.type'], {
      timeoutMs: 30_000,
    });
    expect(r.code, r.stderr).toBe(0);
    return new Set(r.stdout.split('\n').filter(Boolean));
  }

  it('on a host records the echo requests it sends and the replies it receives', async () => {
    expect(await icmpTypes(join(dir, 'h1.pcap'))).toEqual(new Set(['8', '0']));
  });

  it('on the router records both directions, readable by tshark', async () => {
    expect(await icmpTypes(join(dir, 'router.pcap'))).toEqual(new Set(['8', '0']));
  });
});
