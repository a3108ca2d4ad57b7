/**
 * A host agent on in-memory devices and an in-memory LAN with a PAP server,
 * all on one fake clock.
 */
import { Writable } from 'node:stream';
import winston from 'winston';
import { HostConfigSchema } from '../../../src/config/host-config.ts';
import type { HostConfig } from '../../../src/config/host-config.ts';
import { startHost } from '../../../src/host/daemon/start.ts';
import { MemoryPolicyRouting } from '../../../src/host/daemon/policy-routing.ts';
import type { StartHostOptions } from '../../../src/host/daemon/start.ts';
import { MemoryDevice, MemoryScheduler } from '../../../src/io/memory.ts';
import { LeaseStore, MemoryFiles } from '../../../src/pap/lease-store.ts';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import { PapServer } from '../../../src/pap/pap-server.ts';
import { MemoryNetwork } from '../../../src/pap/transport.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import type { PapMessage } from '../../../src/wire/pap.ts';
import { parsePap } from '../../../src/wire/pap.ts';

export const ROUTER_PEER = { address: '10.0.0.7', port: 7032 };
export const HOST_PEER = { address: '10.0.0.1', port: 40001 };

export interface LogLine {
  level: string;
  message: string;
  [field: string]: unknown;
}

export function memoryLogger(): { log: winston.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    objectMode: true,
    write(chunk: LogLine, _enc, done) {
      lines.push(chunk);
      done();
    },
  });
  const log = winston.createLogger({
    level: 'debug',
    transports: [new winston.transports.Stream({ stream })],
  });
  return { log, lines };
}

export function hostConfig(overrides: Record<string, unknown> = {}): HostConfig {
  return HostConfigSchema.parse({
    router: '10.0.0.7',
    lanAddress: '10.0.0.1',
    sharedAddress: '198.51.100.30',
    ...overrides,
  });
}

export const decode = (b: Uint8Array): PapMessage => {
  const p = parsePap(b, 0, b.length);
  if (!p.ok) throw new Error(p.reason);
  return p.value;
};

export interface AgentRigOptions {
  config?: Record<string, unknown>;
  start?: Partial<StartHostOptions>;
  /** No PAP server answers. */
  silentRouter?: boolean;
  leaseSeconds?: number;
  /** The kernel's rule list as the agent finds it; default the three rules of a fresh namespace. */
  routing?: MemoryPolicyRouting;
}

export async function agentRig(o: AgentRigOptions = {}) {
  const clock = new FakeClock(1_700_000_000_000);
  const net = new MemoryNetwork(clock);
  const routerEnd = net.endpoint(ROUTER_PEER);
  let epochs = 0xe0000001;
  const newTable = () =>
    new LeaseTable({
      clock,
      store: new LeaseStore(new MemoryFiles()),
      randomEpoch: () => epochs++,
      leaseSeconds: o.leaseSeconds ?? 300,
    });
  let table = newTable();
  let server = new PapServer(table);
  if (!o.silentRouter) {
    routerEnd.onMessage((bytes, peer) => {
      const reply = server.receive(bytes, peer, routerEnd);
      if (reply !== undefined) routerEnd.send(reply, peer);
    });
  }
  /** The router restarts and has lost every lease (a new epoch). */
  const restartRouterWithoutState = () => {
    table.close();
    table = newTable();
    server = new PapServer(table);
  };
  const scheduler = new MemoryScheduler(false);
  const tun = new MemoryDevice({ name: 'dn0', record: true, scheduler });
  const tunnelIn = new MemoryDevice({ name: 'raw:4', scheduler });
  const tunnelOut = new MemoryDevice({ name: 'raw:255', record: true, scheduler });
  const { log, lines } = memoryLogger();
  // Never the machine's own rules: the agent's hairpin routing goes into a model of the kernel's list.
  const routing = o.routing ?? new MemoryPolicyRouting();
  const agent = await startHost(hostConfig(o.config), log, {
    clock,
    devices: { tun, tunnelIn, tunnelOut },
    papTransport: net.endpoint(HOST_PEER),
    control: false,
    random: () => 0.5,
    policyRouting: routing,
    ...o.start,
  });
  const sentByHost = () =>
    net.log.filter((m) => m.from.address === HOST_PEER.address).map((m) => decode(m.bytes));
  /** Stops the agent, moving the fake clock on so the release exchange (or its bounded wait) completes. */
  const stop = async (): Promise<void> => {
    const stopping = agent.stop();
    clock.advance(2000);
    await stopping;
  };
  return {
    stop,
    clock,
    net,
    table: () => table,
    server: () => server,
    restartRouterWithoutState,
    scheduler,
    tun,
    tunnelIn,
    tunnelOut,
    log,
    lines,
    agent,
    routing,
    sentByHost,
  };
}
