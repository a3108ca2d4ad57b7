import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PORT_RANGE_KEY, RESERVED_PORTS_KEY } from '../../../src/host/daemon/native-ports.ts';
import { MemorySysctl } from '../../../src/host/daemon/sysctl.ts';
import { MemoryPolicyRouting } from '../../../src/host/daemon/policy-routing.ts';
import { HOST_PEER, agentRig } from './agent-rig.ts';
import { buildOuter, buildTcp } from './forwarder-rig.ts';
import { SERVER, SHARED, addr, get16, udp } from './packets.ts';

const LAN = addr('10.0.0.1');
const ROUTER = addr('10.0.0.7');
const SYN = 0x02;
const SYN_ACK = 0x12;

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('host agent leases', () => {
  it('leases a block at start, then forwards; nothing leaves before', async () => {
    const r = await agentRig();
    r.tun.inject(udp(SHARED, 40000, SERVER, 53));
    r.scheduler.runUntilIdle();
    expect(r.tunnelOut.sent).toEqual([]);
    expect(r.agent.forwarder.outboundDrops.get('no-lease')).toBe(1);

    const leased = r.agent.whenLeased(10_000);
    r.clock.advance(10);
    expect(await leased).toBe(true);
    const [block] = r.agent.leases.blocks('port');
    expect(block).toMatchObject({ count: 32, leaseSeconds: 300 });
    expect(r.table().leasesOf(HOST_PEER.address)).toMatchObject([
      { kind: 'port', lowest: block!.lowest, count: 32 },
    ]);
    expect(r.sentByHost()[0]).toMatchObject({ kind: 'port-request', portsRequested: 32 });
    expect(r.lines.some((l) => l.message.startsWith(`leased ports ${block!.lowest}-`))).toBe(true);

    r.tun.inject(udp(SHARED, 40000, SERVER, 53));
    r.scheduler.runUntilIdle();
    expect(r.tunnelOut.sent).toHaveLength(1);
    expect(get16(r.tunnelOut.sent[0]!, 40)).toBe(block!.lowest);

    const s = r.agent.status();
    expect(s.role).toBe('host');
    expect(s.summary['ports held']).toBe(32);
    expect(s.tables[0]!.rows).toHaveLength(1);
    expect(s.tables[1]!.rows).toEqual([[40000, block!.lowest, '17 (UDP)', r.clock.now(), 'udp', '300s']]);
    expect(s.counters['packets.outbound']).toBe(1);
    expect(s.counters['drop.outbound.no-lease']).toBe(1);
    expect(s.counters['io.tun.rxPackets']).toBe(2);
    await r.stop();
  });

  it('renews at half the lease and keeps the block', async () => {
    const r = await agentRig();
    r.clock.advance(10);
    const [block] = r.agent.leases.blocks('port');
    const firstExpiry = block!.expiresAt;
    r.clock.advance(150_000);
    const renews = r.sentByHost().filter((m) => m.kind === 'port-renew');
    expect(renews).toMatchObject([{ lowestPort: block!.lowest, portCount: 32 }]);
    expect(block!.expiresAt).toBeGreaterThan(firstExpiry + 140_000);
    // Long past the first lease, still held: renewed every half lease.
    r.clock.advance(1_000_000);
    expect(r.agent.leases.blocks('port')).toEqual([block]);
    await r.stop();
  });

  it('asks for another block when the ports run low', async () => {
    const r = await agentRig();
    r.clock.advance(10);
    for (let i = 0; i < 25; i++) r.tun.inject(udp(SHARED, 40000 + i, SERVER, 53));
    r.scheduler.runUntilIdle();
    r.clock.advance(10);
    expect(r.agent.leases.blocks('port')).toHaveLength(2);
    expect(r.agent.ports.held).toBe(64);
    await r.stop();
  });

  it('leases afresh when the router restarted without its leases, and drops the old translations', async () => {
    const r = await agentRig();
    r.clock.advance(10);
    const [old] = r.agent.leases.blocks('port');
    r.tun.inject(buildTcp({ src: SHARED, sport: 1234, dst: SERVER, dport: 80, flags: SYN }));
    r.scheduler.runUntilIdle();
    expect(r.agent.sptt.size).toBe(1);
    const oldEpoch = r.agent.leases.epoch;

    r.restartRouterWithoutState();
    r.clock.advance(150_000); // the renewal meets the new router life
    expect(r.agent.leases.epoch).not.toBe(oldEpoch);
    const blocks = r.agent.leases.blocks('port');
    expect(blocks).toHaveLength(1);
    expect(blocks[0]).not.toBe(old);
    expect(r.agent.sptt.size).toBe(0);
    expect(r.table().leasesOf(HOST_PEER.address)).toHaveLength(1);
    expect(r.lines.some((l) => l.level === 'warn' && /router restarted/.test(l.message))).toBe(true);
    expect(
      r.lines.some(
        (l) => l.level === 'warn' && l.message.startsWith('lost ports') && l.reason === 'epoch-changed',
      ),
    ).toBe(true);
    await r.stop();
  });

  it('drops the translations of a block the router withdraws', async () => {
    const r = await agentRig();
    r.clock.advance(10);
    const [block] = r.agent.leases.blocks('port');
    r.tun.inject(buildTcp({ src: SHARED, sport: 1234, dst: SERVER, dport: 80, flags: SYN }));
    r.scheduler.runUntilIdle();
    // The router takes the block back and tells the host where it last heard from it (PAP withdraw).
    expect(r.server().withdraw('port', block!.lowest)).toBe(true);
    r.clock.advance(10);
    expect(r.agent.leases.blocks('port')).not.toContain(block);
    const reply = buildTcp({ src: SERVER, sport: 80, dst: SHARED, dport: block!.lowest, flags: SYN_ACK });
    r.tunnelIn.inject(buildOuter(ROUTER, LAN, reply));
    r.scheduler.runUntilIdle();
    expect(r.agent.sptt.size).toBe(0);
    expect(r.tun.sent).toEqual([]);
    expect(r.agent.forwarder.inboundDrops.get('no-mapping')).toBe(1);
    await r.stop();
  });

  it('gives its blocks back with PAP invalidate on a clean stop', async () => {
    const r = await agentRig();
    r.clock.advance(10);
    const [block] = r.agent.leases.blocks('port');
    const stopping = r.agent.stop();
    r.clock.advance(10);
    await stopping;
    expect(r.sentByHost().filter((m) => m.kind === 'port-invalidate')).toMatchObject([
      { port: block!.lowest },
    ]);
    expect(r.table().leasesOf(HOST_PEER.address)).toEqual([]);
    expect(r.agent.leases.blocks()).toEqual([]);
    expect(r.lines.some((l) => l.message === 'host agent stopped')).toBe(true);
  });

  it('stops within the bounded wait when the router does not confirm', async () => {
    const r = await agentRig();
    r.clock.advance(10);
    r.net.fate = () => ({ drop: true });
    const stopping = r.agent.stop();
    r.clock.advance(2000);
    await stopping;
    expect(r.lines.some((l) => l.level === 'warn' && /did not confirm the release/.test(l.message))).toBe(
      true,
    );
  });

  it('keeps asking a silent router, says so in the log, and whenLeased times out', async () => {
    const r = await agentRig({ silentRouter: true });
    const leased = r.agent.whenLeased(60_000);
    r.clock.advance(120_000);
    expect(await leased).toBe(false);
    const requests = r.sentByHost().filter((m) => m.kind === 'port-request');
    expect(requests.length).toBeGreaterThan(5);
    const warnings = r.lines.filter(
      (l) => l.level === 'warn' && /no port lease yet: router 10.0.0.7 \(UDP port 7032\)/.test(l.message),
    );
    // Logged with growing gaps (5, 10, 20, 40 s ...), not once a second.
    expect(warnings.length).toBeGreaterThanOrEqual(3);
    expect(warnings.length).toBeLessThan(10);
    await r.stop();
  });
});

describe('host agent native mode (Method 130)', () => {
  it('points the kernel ephemeral range at the leased block and restores it on stop', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'dn-host-'));
    dirs.push(stateDir);
    const sysctl = new MemorySysctl({ [PORT_RANGE_KEY]: '32768\t60999', [RESERVED_PORTS_KEY]: '' });
    const r = await agentRig({ config: { mode: 'native', stateDir }, start: { sysctl } });
    const stateFile = join(stateDir, 'native-sysctl-10.0.0.1.json');
    expect(JSON.parse(readFileSync(stateFile, 'utf8'))).toEqual({ range: '32768\t60999', reserved: '' });
    r.clock.advance(10);
    const [block] = r.agent.leases.blocks('port');
    expect(sysctl.values.get(PORT_RANGE_KEY)).toBe(`${block!.lowest} ${block!.lowest + 31}`);

    // Kernel-chosen ports from the block pass untranslated; others are dropped.
    r.tun.inject(buildTcp({ src: SHARED, sport: block!.lowest + 7, dst: SERVER, dport: 80, flags: SYN }));
    r.tun.inject(buildTcp({ src: SHARED, sport: 33000, dst: SERVER, dport: 80, flags: SYN }));
    r.scheduler.runUntilIdle();
    expect(r.tunnelOut.sent.map((p) => get16(p, 40))).toEqual([block!.lowest + 7]);
    expect(r.agent.forwarder.outboundDrops.get('unleased-port')).toBe(1);

    const stopping = r.agent.stop();
    r.clock.advance(10);
    await stopping;
    expect(sysctl.values.get(PORT_RANGE_KEY)).toBe('32768 60999');
    expect(existsSync(stateFile)).toBe(false);
  });

  it('restores the range a crashed run found, not the one it left', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'dn-host-'));
    dirs.push(stateDir);
    // A previous agent set the range to its block and died.
    const first = new MemorySysctl({ [PORT_RANGE_KEY]: '32768\t60999', [RESERVED_PORTS_KEY]: '' });
    const crashed = await agentRig({ config: { mode: 'native', stateDir }, start: { sysctl: first } });
    crashed.clock.advance(10);
    const left = first.values.get(PORT_RANGE_KEY)!;
    expect(left).not.toBe('32768\t60999');
    const sysctl = new MemorySysctl({ [PORT_RANGE_KEY]: left, [RESERVED_PORTS_KEY]: '' });
    const r = await agentRig({ config: { mode: 'native', stateDir }, start: { sysctl } });
    r.clock.advance(10);
    const stopping = r.agent.stop();
    r.clock.advance(10);
    await stopping;
    expect(sysctl.values.get(PORT_RANGE_KEY)).toBe('32768 60999');
    expect(r.lines.some((l) => l.note !== undefined && /previous run/.test(String(l.note)))).toBe(true);
  });
});

describe('host agent hairpin routing', () => {
  const ours = (r: { protocol: number }): boolean => r.protocol === 0x64 || r.protocol === 0x65;

  it('sets the rules when a block is leased, follows the blocks, and removes them on stop', async () => {
    const r = await agentRig();
    const found = r.routing.rules();
    expect(r.routing.applied).toEqual([]);
    r.clock.advance(10);
    const [block] = r.agent.leases.blocks('port');
    expect(r.routing.list.filter(ours)).toEqual([
      expect.objectContaining({ dport: [block!.lowest, block!.lowest + 31], table: 255 }),
      expect.objectContaining({ ipproto: 6, table: 7032 }),
      expect.objectContaining({ ipproto: 17, table: 7032 }),
      expect.objectContaining({ priority: 0, table: 255 }),
    ]);
    expect(r.routing.routes).toEqual([
      { to: '198.51.100.30', dev: 'dn0', src: '198.51.100.30', table: 7032, protocol: 0x64 },
    ]);
    expect(String(r.agent.status().summary['hairpin'])).toContain(`own ports ${block!.lowest}-`);
    // A renewal changes nothing.
    const changes = r.routing.applied.length;
    r.clock.advance(151_000);
    expect(r.routing.applied.length).toBe(changes);
    await r.stop();
    expect(r.routing.rules()).toEqual(found);
    expect(r.routing.routes).toEqual([]);
  });

  it('clears the rules an earlier agent left behind before it starts', async () => {
    const crashed = await agentRig();
    crashed.clock.advance(10);
    const fresh = new MemoryPolicyRouting().rules();
    const routing = new MemoryPolicyRouting(crashed.routing.rules());
    const r = await agentRig({ routing });
    expect(r.lines.some((l) => l.message === 'removed the hairpin rules an earlier agent left behind')).toBe(
      true,
    );
    expect(routing.rules()).toEqual(fresh);
    await r.stop();
    await crashed.stop();
  });

  it('installs nothing with hairpin.enabled false', async () => {
    const r = await agentRig({ config: { hairpin: { enabled: false } } });
    r.clock.advance(10);
    expect(r.routing.applied).toEqual([]);
    expect(r.agent.status().summary['hairpin']).toBe('off (hairpin.enabled: false)');
    await r.stop();
  });
});
