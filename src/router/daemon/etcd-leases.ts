/**
 * The router daemon's lease table when the configuration names etcd: the
 * client (TLS and authentication from the configuration), the table shared
 * with the other routers of the shared address, and what it reports in the
 * log. A router that cannot reach any member does not start (exit 69).
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { Etcd3 } from 'etcd3';
import type { IOptions } from 'etcd3';
import type { RouterConfig } from '../../config/router-config.ts';
import { sharedAddressesOf } from '../../config/router-config.ts';
import { crlPrefix } from '../../pap/shared-lease-layout.ts';
import { SharedLeaseTable } from '../../pap/shared-lease-table.ts';
import { SharedRevocationList } from '../../pki/index.ts';
import type { Clock } from '../../util/clock.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import type { Logger } from '../../util/log.ts';
import { ipv4FromString } from '../../wire/ipv4.ts';

type EtcdConfig = NonNullable<RouterConfig['etcd']>;

/** The prefix of one shared address's leases. */
export function leasePrefix(etcd: EtcdConfig, sharedAddress: string): string {
  return `${etcd.prefix}${sharedAddress}/`;
}

/**
 * Where this router's first-fit search for a free block starts, as a
 * fraction of each range: its LAN address times the golden ratio, modulo 1
 * (Fibonacci hashing). Routers on one LAN have different addresses, and
 * neighbouring ones land far apart (10.0.0.7 and 10.0.0.8 about 0.38 of the
 * range), so each grants in its own stretch and their compares rarely meet.
 */
export function searchFromOf(lanAddress: string): number {
  const lan = ipv4FromString(lanAddress) ?? 0;
  return (Math.imul(lan, 0x9e3779b9) >>> 0) / 0x1_0000_0000;
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UserError(`etcd.tls.${what}: cannot read ${path}: ${(e as Error).message}`, ExitCode.CONFIG);
  }
}

export function etcdClientOptions(etcd: EtcdConfig, now: () => number = Date.now): IOptions {
  const callMs = etcd.callTimeoutSeconds * 1000;
  // The client tries a failed call up to three times, on the next member each
  // time, and asks for the call options at every try: a deadline taken anew
  // each time let a router cut off from every member answer only after three
  // deadlines, longer than a host waits before it leaves the router
  // (failover.silentSeconds). One deadline for all tries of a call, keyed by
  // its request object, which the client passes unchanged to every try.
  const deadlines = new WeakMap<object, number>();
  const deadlineOf = (params: unknown): number => {
    if (typeof params !== 'object' || params === null) return now() + callMs;
    let at = deadlines.get(params);
    if (at === undefined) deadlines.set(params, (at = now() + callMs));
    return at;
  };
  const options: IOptions = {
    hosts: etcd.endpoints,
    dialTimeout: etcd.dialTimeoutSeconds * 1000,
    // Watches stay open; every other call gives up in time for the host to hear try-later.
    defaultCallOptions: (ctx) =>
      ctx.isStream ? {} : { deadline: deadlineOf('params' in ctx ? ctx.params : undefined) },
  };
  if (etcd.tls !== undefined)
    options.credentials = {
      rootCertificate: readPem(etcd.tls.ca, 'ca'),
      ...(etcd.tls.cert !== undefined && etcd.tls.key !== undefined
        ? { certChain: readPem(etcd.tls.cert, 'cert'), privateKey: readPem(etcd.tls.key, 'key') }
        : {}),
    };
  if (etcd.auth !== undefined) {
    let password: string;
    try {
      password = readFileSync(etcd.auth.passwordFile, 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      throw new UserError(
        `etcd.auth.passwordFile: cannot read ${etcd.auth.passwordFile}: ${(e as Error).message}`,
        ExitCode.CONFIG,
      );
    }
    options.auth = { username: etcd.auth.username, password };
  }
  return options;
}

/** Opens the shared table; its closer (watch, client) goes onto `closers`. */
export async function openSharedLeaseTable(
  config: RouterConfig,
  clock: Clock,
  log: Logger,
  closers: (() => void | Promise<void>)[],
): Promise<SharedLeaseTable> {
  const etcd = config.etcd!;
  const client = new Etcd3(etcdClientOptions(etcd));
  // Each shared address's ports under its own prefix; the SPIs and the epoch under the first's.
  const addresses = sharedAddressesOf(config);
  const prefixes = addresses.map((a) => leasePrefix(etcd, a));
  const prefix = prefixes[0]!;
  const searchFrom = searchFromOf(config.lanAddress);
  let table: SharedLeaseTable;
  try {
    table = await SharedLeaseTable.open({
      client,
      prefix,
      prefixes,
      addresses,
      searchFrom,
      clock,
      routerId: `${hostname()} ${config.lanAddress}`,
      clockSkewMs: etcd.clockSkewSeconds * 1000,
      portRange: { min: config.pap.portRange[0], max: config.pap.portRange[1] },
      spiRange: { min: config.pap.spiFirst, max: 0xffffffff },
      blockSize: { port: config.pap.blockSize, spi: config.pap.spiBlockSize },
      maxPerHost: { port: config.pap.maxPortsPerHost, spi: config.pap.maxSpisPerHost },
      leaseSeconds: config.pap.leaseSeconds,
      maxLeaseSeconds: Math.max(config.pap.maxLeaseSeconds, config.pap.leaseSeconds),
      quarantineSeconds: config.pap.quarantineSeconds,
      onSkip: (key, reason) => log.warn('etcd: key under the lease prefix skipped', { key, reason }),
      onAvailability: (available, error) =>
        available
          ? log.info('etcd answers again: granting', { endpoints: etcd.endpoints.join(',') })
          : log.warn(
              'etcd does not answer: no grants (try-later), known leases forwarded until they expire',
              {
                endpoints: etcd.endpoints.join(','),
                error,
              },
            ),
    });
  } catch (e) {
    client.close();
    throw new UserError(
      `etcd does not answer (tried ${etcd.endpoints.join(', ')}): ${(e as Error).message}`,
      ExitCode.UNAVAILABLE,
    );
  }
  closers.push(async () => {
    await table.close();
    client.close();
  });
  log.info('leases on etcd', {
    endpoints: etcd.endpoints.join(','),
    prefix: prefixes.join(','),
    searchFrom: Number(searchFrom.toFixed(3)),
    epoch: table.epoch,
    leases: table.leases().length,
  });
  return table;
}

/**
 * The local CA's revocation list, shared on the same etcd as the leases
 * (beside them, under <prefix><sharedAddress>/crl/): every router's CRL
 * lists what any router revoked. Its closer goes onto `closers`.
 */
export async function openSharedRevocations(
  config: RouterConfig,
  table: SharedLeaseTable,
  clock: Clock,
  log: Logger,
  closers: (() => void | Promise<void>)[],
): Promise<SharedRevocationList> {
  const etcd = config.etcd!;
  let list: SharedRevocationList;
  try {
    list = await SharedRevocationList.open({
      client: table.client,
      prefix: crlPrefix(table.prefix),
      clock,
      routerId: `${hostname()} ${config.lanAddress}`,
      onSkip: (key, reason) => log.warn('etcd: key under the CRL prefix skipped', { key, reason }),
    });
  } catch (e) {
    throw new UserError(
      `etcd does not answer (tried ${etcd.endpoints.join(', ')}): ${(e as Error).message}`,
      ExitCode.UNAVAILABLE,
    );
  }
  closers.push(() => list.close());
  log.info('CRL shared on etcd', {
    prefix: list.prefix,
    entries: list.entries(clock.now()).length,
    crlNumber: list.number,
  });
  return list;
}
