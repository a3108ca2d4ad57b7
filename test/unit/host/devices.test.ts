/**
 * The agent's tunnel socket is bound to the LAN interface. Linux hands a
 * protocol-4 datagram for any local address to every protocol-4 raw socket,
 * whatever the interface; the shared address is local on a host, so an
 * unbound socket also read IP-in-IP that came out of the agent's own TUN
 * (found by `npm run fuzz`, whose sums such reads break). The devices are
 * doubles here: what is checked is what the agent asks of the kernel.
 */
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { HostConfig } from '../../../src/config/host-config.ts';
import type { Logger } from '../../../src/util/log.ts';

const sockets: { protocol: number; device: string | undefined }[] = [];
const device = () => ({ name: 'dev', close: () => {}, stats: () => ({}) });

vi.mock('../../../src/io/raw.ts', () => ({
  openRawSocket: (protocol: number, options: { device?: string } = {}) => {
    sockets.push({ protocol, device: options.device });
    return device();
  },
  openRawSender: () => device(),
}));
vi.mock('../../../src/io/tun.ts', () => ({ openTun: () => device() }));
vi.mock('../../../src/io/offload-tun.ts', () => ({ offloadByDefault: () => false, OffloadTun: class {} }));
vi.mock('../../../src/io/interfaces.ts', () => ({
  interfaceMtu: () => 1500,
  interfaceOf: (address: string) => (address === '10.0.0.1' ? 'lan0' : undefined),
}));

const { openAgentDevices, openHostDevices } = await import('../../../src/host/daemon/devices.ts');

const log = { error: () => {}, warn: () => {}, info: () => {} } as unknown as Logger;
const config = (lanAddress: string) => ({ tun: 'dn0', lanAddress }) as unknown as HostConfig;

describe('the host agent tunnel socket', () => {
  beforeEach(() => {
    sockets.length = 0;
  });

  it('receives IP-in-IP only on the interface that carries the LAN address', () => {
    openAgentDevices(config('10.0.0.1'), {}, log, []);
    expect(sockets).toEqual([{ protocol: 4, device: 'lan0' }]);
  });

  it('is left unbound when the LAN address is on no interface (the start-up reports that elsewhere)', () => {
    openAgentDevices(config('10.9.9.9'), {}, log, []);
    expect(sockets).toEqual([{ protocol: 4, device: undefined }]);
  });

  it('binds to the interface it is given', () => {
    openHostDevices('dn0', () => {}, { lanInterface: 'eth1' });
    expect(sockets).toEqual([{ protocol: 4, device: 'eth1' }]);
  });
});
