import { z } from 'zod';

/** Field types shared by every configuration file. */

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export const ipv4Address = z.string().regex(IPV4, 'expected an IPv4 address such as 10.0.0.7');

export const port = z.number().int().min(1).max(65535);

/** Interface names are limited by the kernel's IFNAMSIZ (16 with the NUL). */
export const interfaceName = z
  .string()
  .min(1)
  .max(15, 'expected an interface name of at most 15 characters')
  .regex(/^[^\s/:]+$/, 'expected an interface name without spaces, slashes or colons');

export const seconds = z.number().positive();

export const listenAddress = z
  .string()
  .regex(/^[^\s:]+:\d{1,5}$/, 'expected host:port, for example 127.0.0.1:9732');

export const logLevel = z.enum(['error', 'warn', 'info', 'debug']);
