/**
 * PAP over raw ICMP (types 32/33) through the addon's sockets between two
 * namespaces of this file's own (dxr-pa, dxr-pb): a PapServer in one, a
 * PapClient in the other, and an ordinary ping alongside that the transport
 * must leave alone.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inNs, NamespaceSet, NsProgram, ROOT } from './io-ns.ts';

const nss = new NamespaceSet();
const R = 'dxr-pa';
const H = 'dxr-pb';
const dir = mkdtempSync(join(tmpdir(), 'dxr-icmp-'));

const server = `
import { IcmpPapTransport } from '${ROOT}src/pap/icmp-transport.ts';
import { LeaseTable } from '${ROOT}src/pap/lease-table.ts';
import { PapServer } from '${ROOT}src/pap/pap-server.ts';
import { SystemClock } from '${ROOT}src/util/clock.ts';
const table = new LeaseTable({ clock: new SystemClock() });
const transport = IcmpPapTransport.open({ address: '10.97.0.7', device: 'dxr-ra' });
const server = new PapServer(table);
server.attach(transport);
process.on('SIGTERM', () => {
  transport.close();
  table.close();
  console.log(JSON.stringify({ transport: transport.counters, answered: server.counters.answered, leases: table.leases() }));
  process.exit(0);
});
console.log('ready');
`;

const client = `
import { HostLeases } from '${ROOT}src/pap/host-leases.ts';
import { IcmpPapTransport } from '${ROOT}src/pap/icmp-transport.ts';
import { PapClient } from '${ROOT}src/pap/pap-client.ts';
import { SystemClock } from '${ROOT}src/util/clock.ts';
const clock = new SystemClock({ unref: true });
const transport = IcmpPapTransport.open({ address: '10.97.0.1' });
const client = new PapClient({ clock, transport, leases: new HostLeases({ clock }), router: { address: '10.97.0.7' },
  retransmit: { initialMs: 300, attempts: 4 } });
const ports = await client.request('port', 16);
const spis = await client.request('spi', 8);
client.stop();
transport.close();
console.log(JSON.stringify({ ports, spis, counters: transport.counters }));
process.exit(0);
`;

beforeAll(() => {
  nss.add(R);
  nss.add(H);
  nss.link(R, 'dxr-ra', '10.97.0.7/24', H, 'dxr-rb', '10.97.0.1/24');
  writeFileSync(join(dir, 'server.mts'), server);
  writeFileSync(join(dir, 'client.mts'), client);
});
afterAll(() => {
  nss.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

interface ClientResult {
  ports: { status: string; response: { kind: string; lowestPort: number; portCount: number } };
  spis: { status: string; response: { kind: string; lowestSpi: number; spiCount: number } };
  counters: { received: number; sent: number };
}

describe('IcmpPapTransport between namespaces', () => {
  it('carries PAP requests and answers as ICMP types 32 and 33', async () => {
    const srv = new NsProgram(R, join(dir, 'server.mts'), []);
    try {
      await srv.ready();
      // An ordinary ping at the same time: the kernel answers it, the transport skips it.
      const ping = inNs(H, 'ping', '-c', '2', '-i', '0.2', '-W', '2', '10.97.0.7');
      expect(ping).toMatch(/2 received/);
      const got = await new NsProgram(H, join(dir, 'client.mts'), []).result<ClientResult>();
      expect(got.ports.status).toBe('ok');
      expect(got.ports.response).toMatchObject({ kind: 'port-response', portCount: 16 });
      expect(got.spis.status).toBe('ok');
      expect(got.spis.response).toMatchObject({ kind: 'spi-response', spiCount: 8 });
      expect(got.spis.response.lowestSpi).toBeGreaterThanOrEqual(256);
      expect(got.counters.received).toBe(2);
      const s = await srv.result<{
        transport: { received: number; ignored: number; sent: number };
        leases: { host: string; kind: string }[];
      }>(true);
      expect(s.transport.received).toBe(2);
      expect(s.transport.sent).toBe(2);
      // The pings' echo requests reached the raw socket and were skipped.
      expect(s.transport.ignored).toBeGreaterThanOrEqual(2);
      expect(s.leases.map((l) => `${l.host} ${l.kind}`).sort()).toEqual(['10.97.0.1 port', '10.97.0.1 spi']);
    } finally {
      srv.kill();
    }
  });
});
