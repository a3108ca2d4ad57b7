import { z } from 'zod';

/** Field types shared by every configuration file. */

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** RFC 1123 host names; all-digit names are left to IPV4, so that 10.0.0.999 is not taken for a name. */
const HOST_NAME = /^(?![\d.]+$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

const IPV4_EXPECTED = 'expected an IPv4 address such as 10.0.0.7';

export const ipv4Address = z.string({ error: IPV4_EXPECTED }).regex(IPV4, IPV4_EXPECTED);

/** An IPv4 address a file must give; `expected` says what it is and where else it may come from. */
export const requiredIpv4Address = (expected: string) =>
  z
    .string({ error: (issue) => (issue.input === undefined ? expected : IPV4_EXPECTED) })
    .regex(IPV4, IPV4_EXPECTED);

export const port = z.number().int().min(1).max(65535);

/** Interface names are limited by the kernel's IFNAMSIZ (16 with the NUL). */
export const interfaceName = z
  .string()
  .min(1)
  .max(15, 'expected an interface name of at most 15 characters')
  .regex(/^[^\s/:]+$/, 'expected an interface name without spaces, slashes or colons');

export const seconds = z.number().positive();

/** Why `text` is not an address to listen on (host:port), or undefined when it is one. */
export function listenAddressProblem(text: string): string | undefined {
  const m = /^([^\s:]*):(\d+)$/.exec(text);
  if (m === null) return 'expected host:port, for example 127.0.0.1:9732';
  const [, host, portText] = m as unknown as [string, string, string];
  if (!IPV4.test(host) && !HOST_NAME.test(host))
    return `expected an IPv4 address or a host name before the port, such as 127.0.0.1:9732`;
  if (Number(portText) > 65535) return 'expected a port of 0-65535 after the colon (0: any free port)';
  return undefined;
}

/** Where a daemon serves something over TCP: an IPv4 address or host name, and a port. */
export const listenAddress = z.string().superRefine((text, ctx) => {
  const problem = listenAddressProblem(text);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
});

/** The port of a valid listen address. */
export const listenPort = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));

/** The host part of a valid listen address. */
export const listenHost = (address: string): string => address.slice(0, address.lastIndexOf(':'));

export const logLevel = z.enum(['error', 'warn', 'info', 'debug']);
