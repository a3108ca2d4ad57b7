/**
 * What the kernel says about this namespace's interfaces: which one holds
 * an address, an interface's IPv4 address and its MTU. Shared by the router,
 * the host agent and `distnat peer`, which all bind to one of them.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';

/** The interface holding an IPv4 address in this network namespace, or undefined. */
export function interfaceOf(address: string): string | undefined {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (addrs?.some((a) => a.family === 'IPv4' && a.address === address)) return name;
  }
  return undefined;
}

/**
 * The first IPv4 address of an interface, or undefined. Node lists only
 * interfaces that are up and running, and a TUN device nobody has opened (or
 * a link whose peer is not up yet) has no carrier, so `ip` is asked when
 * Node does not know the interface.
 */
export function addressOf(name: string): string | undefined {
  const known = networkInterfaces()[name]?.find((a) => a.family === 'IPv4')?.address;
  if (known !== undefined) return known;
  try {
    const out = execFileSync('ip', ['-4', '-o', 'addr', 'show', 'dev', name], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return /\binet (\d+\.\d+\.\d+\.\d+)\//.exec(out)?.[1];
  } catch {
    return undefined;
  }
}

/** An interface's MTU from sysfs, or undefined. */
export function interfaceMtu(name: string): number | undefined {
  try {
    const v = Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim());
    return Number.isInteger(v) && v > 0 ? v : undefined;
  } catch {
    return undefined;
  }
}
