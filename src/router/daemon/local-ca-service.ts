/**
 * The router as the patent's local certificate authority (FIG. 22-25), run
 * beside the lease table: it opens the local CA made by `distnat ca
 * issue-local`, revokes at start what ended while the router was down,
 * follows the lease table so that a block that ends revokes its
 * certificates, and serves the endpoint of docs/pki.md:
 *
 *   lanAddress:port   POST /csr, GET /ca, GET /crl   (hosts)
 *   wanAddress:port   GET /crl, GET /ca              (remote peers; no CSRs)
 *
 * The CRL is remade when something was revoked and, through a timer, before
 * half its lifetime has passed, so crl.pem on disk and the served CRL never
 * lapse even when nobody asks.
 */
import type { Server } from 'node:http';
import type { StatusTable } from '../../control/status.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import type { Lease, LeaseEndReason, LeaseListener } from '../../pap/lease.ts';
import { CaError, formatRanges, LocalCa, startPkiServer } from '../../pki/index.ts';
import type { IssuedCertificate, LeaseLookup, SharedRevocationList, x509 } from '../../pki/index.ts';
import type { Clock, Timer } from '../../util/clock.ts';
import { SystemClock } from '../../util/clock.ts';

/** What the service needs of the router's LeaseTable. */
export interface LeaseSource extends LeaseLookup {
  leases(): readonly Lease[];
  addListener(listener: LeaseListener, replayExisting?: boolean): void;
  removeListener(listener: LeaseListener): void;
}

/** The few log methods used; the router's winston logger fits. */
export interface ServiceLog {
  info(message: string, meta?: Record<string, unknown>): unknown;
  warn(message: string, meta?: Record<string, unknown>): unknown;
}

export interface LocalCaServiceOptions {
  /** The local CA directory (config `pki.dir`). */
  readonly dir: string;
  readonly lanAddress: string;
  /** Port of both listeners; 0 takes any free port (tests). */
  readonly port: number;
  /** Where the CRL is also published, without the CSR endpoint. */
  readonly wanAddress?: string;
  readonly crlSeconds?: number;
  readonly leases: LeaseSource;
  /** The revocation list the routers of the shared address share on etcd; without it, the registry's. */
  readonly revocations?: SharedRevocationList;
  readonly log: ServiceLog;
  readonly clock?: Clock;
  /** The router's shared addresses, first first (the order of its port slots). Default: the CA's first. */
  readonly sharedAddresses?: readonly string[];
}

/** Gauges for status and metrics. */
export interface LocalCaStats {
  /** Host certificates in the registry (kept until a day after they expire). */
  readonly issued: number;
  /** Neither revoked nor expired now. */
  readonly valid: number;
  /** Revoked and not yet expired: the entries of the CRL. */
  readonly revoked: number;
  /** cRLNumber of the CRL served now; 0 before the first. */
  readonly crlNumber: number;
  /** nextUpdate of the CRL served now (ms since the Unix epoch); 0 before the first. */
  readonly crlNextUpdate: number;
  /** With the list on etcd: its counters (crl_etcd_*), and revocations etcd has not taken yet. */
  readonly shared?: Record<string, number>;
}

const isHost = (e: IssuedCertificate): boolean => e.role === 'host';

/** The cRLNumber extension's value: a DER INTEGER (RFC 5280 5.2.3). */
export function crlNumberOf(crl: x509.X509Crl): number {
  const ext = crl.getExtension('2.5.29.20');
  if (ext === null) return 0;
  const der = new Uint8Array(ext.value);
  if (der[0] !== 0x02 || der.length < 3 || der[1] !== der.length - 2) return 0;
  let n = 0;
  for (const b of der.subarray(2)) n = n * 256 + b;
  return n;
}

export class LocalCaService implements LeaseListener {
  readonly ca: LocalCa;
  /** host:port of the full endpoint. */
  readonly lanEndpoint: string;
  /** host:port of the CRL-only endpoint, when serving one. */
  readonly wanEndpoint: string | undefined;
  readonly #leases: LeaseSource;
  readonly #clock: Clock;
  readonly #servers: Server[];
  readonly #refreshMs: number;
  readonly #revocations: SharedRevocationList | undefined;
  /** With several shared addresses the certificate table names each certificate's. */
  readonly #several: boolean;
  #crl: x509.X509Crl | undefined;
  #timer: Timer | undefined;
  #closed = false;

  private constructor(
    ca: LocalCa,
    servers: Server[],
    o: LocalCaServiceOptions,
    clock: Clock,
    crl: x509.X509Crl | undefined,
  ) {
    this.ca = ca;
    this.#servers = servers;
    this.#leases = o.leases;
    this.#clock = clock;
    this.#crl = crl;
    this.#refreshMs = ((o.crlSeconds ?? 600) * 1000) / 4;
    this.#revocations = o.revocations;
    this.#several = (o.sharedAddresses?.length ?? 1) > 1;
    this.lanEndpoint = endpointOf(servers[0]!, o.lanAddress);
    this.wanEndpoint = servers[1] === undefined ? undefined : endpointOf(servers[1], o.wanAddress!);
  }

  /**
   * Opens the CA, reconciles it with the leases the table holds now, starts
   * following the table and listens. Every failure is a UserError naming the
   * configuration field to fix; whatever was opened is closed again.
   */
  static async start(o: LocalCaServiceOptions): Promise<LocalCaService> {
    const clock = o.clock ?? new SystemClock();
    const ca = await openLocalCa(o.dir, {
      clock,
      crlSeconds: o.crlSeconds,
      revocations: o.revocations,
      routerAddresses: o.sharedAddresses,
      onError: (e) =>
        e.message.startsWith('etcd did not take')
          ? o.log.warn('etcd did not take a revocation: in this router’s CRL, offered again', {
              error: e.message,
            })
          : o.log.warn('the local CA could not make a CRL', { error: e.message }),
    });
    const revoked = ca.reconcile(o.leases.leases());
    if (revoked.length > 0)
      o.log.warn('revoked certificates whose blocks ended while the router was down', { serials: revoked });
    const crl = await ca.crl();

    const servers: Server[] = [];
    const closeAll = () => Promise.all(servers.map(closeServer));
    try {
      servers.push(await listen(ca, o, o.lanAddress, true, 'pki.port'));
      if (o.wanAddress !== undefined)
        servers.push(await listen(ca, o, o.wanAddress, false, 'pki.wanAddress'));
    } catch (e) {
      await closeAll();
      throw e;
    }
    const service = new LocalCaService(ca, servers, o, clock, crl);
    o.leases.addListener(service, false);
    if (o.revocations !== undefined)
      o.revocations.onChange = () => {
        const made = ca.revocationsChanged();
        if (made !== undefined) service.publishCrl().catch(() => undefined);
      };
    service.#arm();
    service.#checkCrlUrl(o);
    // A CA made before the router had its further addresses keeps certifying the ones it names.
    const uncertified = ca.uncertifiedAddresses();
    if (uncertified.length > 0)
      o.log.warn(
        'the local CA does not certify every shared address: hosts leasing there get no certificate',
        {
          certified: ca.sharedAddresses,
          uncertified,
          hint:
            'make a local CA for all of them with `distnat ca issue-local ' +
            (o.sharedAddresses ?? []).map((a) => `--shared-address ${a}`).join(' ') +
            ' --root <root CA dir> --out <new dir> ...` and point pki.dir at it',
        },
      );
    o.log.info('local CA serving', {
      ca: ca.authority.certificate.subject,
      csr: `http://${service.lanEndpoint}/csr`,
      crl:
        service.wanEndpoint === undefined
          ? `http://${service.lanEndpoint}/crl`
          : `http://${service.wanEndpoint}/crl`,
      crlUrl: ca.crlUrl,
      crlNumber: crlNumberOf(crl),
      valid: service.stats().valid,
    });
    return service;
  }

  onLeaseAdded(): void {}

  onLeaseRenewed(): void {}

  /** Revokes through the CA, then follows the CRL that revocation set off so status shows it. */
  onLeaseRemoved(lease: Lease, reason: LeaseEndReason): void {
    this.ca.onLeaseRemoved(lease, reason);
    this.publishCrl().catch(() => {
      // LocalCa reports a failed CRL through onError already.
    });
  }

  /** The current CRL, remade first if anything was revoked; resolves once it is signed and on disk. */
  async publishCrl(): Promise<x509.X509Crl> {
    const crl = await this.ca.crl();
    if (this.#crl === undefined || crlNumberOf(crl) >= crlNumberOf(this.#crl)) this.#crl = crl;
    return crl;
  }

  /** Serials of the host certificates valid now for `host`. */
  validSerialsOf(host: string): string[] {
    return this.ca.authority.registry
      .valid(this.#clock.now())
      .filter((e) => isHost(e) && e.host === host)
      .map((e) => e.serial);
  }

  /** True when the registry holds `serial` as revoked. */
  isRevoked(serial: string): boolean {
    return this.ca.authority.registry.find(serial)?.revoked !== undefined;
  }

  stats(): LocalCaStats {
    const now = this.#clock.now();
    const hosts = this.ca.authority.registry.list().filter(isHost);
    const crl = this.#crl;
    return {
      issued: hosts.length,
      valid: hosts.filter((e) => e.revoked === undefined && e.notAfter > now).length,
      revoked: hosts.filter((e) => e.revoked !== undefined && e.notAfter > now).length,
      crlNumber: crl === undefined ? 0 : crlNumberOf(crl),
      crlNextUpdate: crl?.nextUpdate?.getTime() ?? 0,
      ...(this.#revocations === undefined
        ? {}
        : { shared: { ...this.#revocations.stats(), crl_etcd_unshared: this.ca.unshared } }),
    };
  }

  /** Summary lines for `distnat status router`. */
  summary(): Record<string, string> {
    const s = this.stats();
    const next = s.crlNextUpdate === 0 ? 'none yet' : new Date(s.crlNextUpdate).toISOString();
    return {
      'local CA': this.ca.authority.certificate.subject,
      'CA endpoint':
        `http://${this.lanEndpoint}/csr` +
        (this.wanEndpoint ? `, CRL also http://${this.wanEndpoint}/crl` : ''),
      CRL: `number ${s.crlNumber}, next update ${next}, URL in certificates ${this.ca.crlUrl}`,
    };
  }

  /** The host certificates valid now, as `distnat status router` prints them. */
  statusTable(): StatusTable {
    const now = this.#clock.now();
    return {
      title: 'LOCAL CA: VALID HOST CERTIFICATES (FIG. 22-25, revoked when a block they name ends)',
      columns: [
        'INTERNAL NETWORK ADDRESS',
        ...(this.#several ? ['SHARED ADDRESS'] : []),
        'SERIAL',
        'PORTS',
        'SPIs',
        'EXPIRES IN',
      ],
      rows: this.ca.authority.registry
        .valid(now)
        .filter(isHost)
        .map((e) => [
          e.host ?? '?',
          ...(this.#several ? [e.address ?? this.ca.sharedAddress] : []),
          e.serial,
          formatRanges(e.ports) || '-',
          formatRanges(e.spis) || '-',
          `${Math.max(0, Math.round((e.notAfter - now) / 1000))}s`,
        ]),
    };
  }

  /** Stops following the leases and the timer, closes both listeners. The CA directory stays. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#leases.removeListener(this);
    this.#timer?.cancel();
    if (this.#revocations !== undefined) this.#revocations.onChange = undefined;
    await Promise.all(this.#servers.map(closeServer));
    // A CRL being signed finishes writing crl.pem before the router lets go of the directory.
    await this.ca.crl().catch(() => undefined);
  }

  #arm(): void {
    if (this.#closed) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.publishCrl()
        .catch(() => undefined)
        .finally(() => this.#arm());
    }, this.#refreshMs);
  }

  /** The URL written into certificates is what peers use; say so when this router does not serve it. */
  #checkCrlUrl(o: LocalCaServiceOptions): void {
    let url: URL;
    try {
      url = new URL(this.ca.crlUrl);
    } catch {
      return;
    }
    const port = url.port === '' ? (url.protocol === 'https:' ? '443' : '80') : url.port;
    const served = [this.lanEndpoint, this.wanEndpoint].filter((e) => e !== undefined);
    if (url.protocol !== 'http:' || !served.includes(`${url.hostname}:${port}`))
      o.log.warn('the CRL URL in the certificates is not served by this router', {
        crlUrl: this.ca.crlUrl,
        served: served.map((e) => `http://${e}/crl`),
        hint: 'publish crl.pem there yourself, or make the local CA with `distnat ca issue-local --crl-url http://<WAN address>:<port>/crl`',
      });
  }
}

/** Opens the local CA, turning every way a directory can be wrong into a message naming `pki.dir`. */
async function openLocalCa(dir: string, o: ConstructorParameters<typeof LocalCa>[1]): Promise<LocalCa> {
  try {
    return await LocalCa.open(dir, o);
  } catch (e) {
    if (e instanceof CaError || e instanceof SyntaxError)
      throw new UserError(
        `field \`pki.dir\` (--ca-dir): ${dir} holds no usable local CA: ${e.message}\n` +
          'Make one with `distnat ca issue-local --shared-address <shared address> --root <root CA dir> ' +
          `--out ${dir} --crl-url http://<WAN address>:7033/crl` +
          '` (the root from `distnat ca init`).',
        ExitCode.CONFIG,
      );
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM')
      throw new UserError(`field \`pki.dir\`: cannot read ${dir}: ${(e as Error).message}`, ExitCode.NOPERM);
    throw e;
  }
}

async function listen(
  ca: LocalCa,
  o: LocalCaServiceOptions,
  host: string,
  acceptCsr: boolean,
  field: string,
): Promise<Server> {
  try {
    return await startPkiServer({
      ca,
      leases: o.leases,
      host,
      port: o.port,
      acceptCsr,
      now: () => (o.clock ?? { now: Date.now }).now(),
      log: (line) => o.log.info(`pki: ${line}`),
    });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE')
      throw new UserError(
        `field \`${field}\`: TCP ${host}:${o.port} is taken (another router or program serves it)`,
        ExitCode.CANTCREATE,
      );
    if (code === 'EADDRNOTAVAIL')
      throw new UserError(`field \`${field}\`: ${host} is not an address of this machine`, ExitCode.CONFIG);
    throw e;
  }
}

function endpointOf(server: Server, host: string): string {
  const a = server.address();
  return a !== null && typeof a === 'object' ? `${host}:${a.port}` : host;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
