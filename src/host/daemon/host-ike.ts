/**
 * IKE on a host behind distnat (patent FIG. 22-25, docs/ike.md "On a
 * host"): a host has no address and no port 500 of its own, so
 *
 * - IKE runs on one of its leased UDP ports, on a socket bound to the
 *   shared address; the agent keeps that port out of the translation table
 *   (the forwarder's service ports), so the port the peer sees is the port
 *   the certificate names;
 * - its key pair is made here and never leaves (<stateDir>/ike-key.pem);
 *   the certificate comes from the router's local CA (POST /csr), binds the
 *   key to the shared address and the blocks this host holds, and is kept
 *   beside the key (<stateDir>/ike-cert.pem). It is asked for again whenever
 *   the blocks change and at half its life, because the router issues it
 *   only for as long as the leases run;
 * - inbound child SA SPIs come from the leased SPI blocks, and the SAD
 *   refuses any other;
 * - its side of every child SA is the ports it holds less IKE's own port
 *   (as initiator it offers that, as responder it narrows to it), and the
 *   peer's side is the peer's IKE address;
 * - when the router withdraws a block, the SAs resting on it are deleted
 *   and the peers told (revocation.ts says which), and the peers it keeps
 *   SAs with are not tried again until a certificate for the blocks held
 *   after the withdrawal is in hand.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { IkeConfig } from '../../config/ike-config.ts';
import { ikeBypassPolicy } from '../../ike/engine-sad.ts';
import { startIkeService, type IkeService } from '../../ike/service.ts';
import {
  bindingSelectors,
  hostSelector,
  narrow,
  withoutUdpPort,
  type Ipv4Selector,
} from '../../ike/selectors.ts';
import { bindingOf, spiAllocatorFromBlocks, type ChildPolicy } from '../../ike/policy.ts';
import type { ChildSa } from '../../ike/child-sa.ts';
import type { IkeSa } from '../../ike/ike-sa.ts';
import { UdpTransport } from '../../ike/udp-transport.ts';
import { IpsecEngine, SecurityAssociationDatabase, SecurityPolicyDatabase } from '../../ipsec/index.ts';
import type { HeldBlock } from '../../pap/held-block.ts';
import type { BlockLossReason, HostLeases, HostLeasesListener } from '../../pap/host-leases.ts';
import { createCertificateRequest, requestHostCertificate } from '../../pki/client.ts';
import { generateSigningKey, loadSigningKey, type SigningKey } from '../../pki/keys.ts';
import type { Block } from '../../util/block.ts';
import type { Clock, Timer } from '../../util/clock.ts';
import type { Logger } from '../../util/log.ts';
import { EngineIpsecStep, inSpiBlocks } from '../data-path/ipsec-engine-step.ts';
import type { LeasedPortPool } from '../data-path/leased-ports.ts';
import { planRevocation } from './revocation.ts';

/** What the agent did about withdrawn blocks, for status (`ike.<name>`) and metrics. */
export const REVOCATION_EVENTS = [
  /** Blocks the router withdrew while IKE ran. */
  'revocation-withdrawals',
  /** IKE SAs deleted because the certificate they were authenticated with names a withdrawn block. */
  'revocation-ike-sas-deleted',
  /** Child SAs deleted because their inbound SPI lies in a withdrawn SPI block. */
  'revocation-child-sas-deleted',
  /** IKE SAs being set up with a revoked certificate, dropped unfinished. */
  'revocation-abandoned',
  /** Times the agent went back to its peers with a certificate for the blocks it holds now. */
  'revocation-resumed',
] as const;
export type RevocationEvent = (typeof REVOCATION_EVENTS)[number];

/**
 * The most ESP can add in tunnel mode with the transforms offered by
 * default: outer IPv4 20, UDP encapsulation 8, ESP header 8, IV 16, padding
 * up to 15, pad length and next header 2, ICV 16.
 */
export const IKE_MAX_ESP_OVERHEAD = 85;

/** Where the agent asks for certificates when the IKE file does not say. */
export const defaultCertificateUrl = (router: string): string => `http://${router}:7033`;

export interface HostIkeOptions {
  readonly config: IkeConfig;
  readonly sharedAddress: string;
  readonly router: string;
  readonly stateDir: string;
  readonly leases: HostLeases;
  readonly ports: LeasedPortPool;
  readonly clock: Clock;
  readonly log: Logger;
}

/** Reads the key, or makes one (PKCS #8, mode 0600) where the file should be. */
async function hostKey(
  file: string,
  type: IkeConfig['keyType'],
  log: Logger,
): Promise<{ key: SigningKey; pem: string }> {
  if (existsSync(file)) {
    const pem = readFileSync(file, 'utf8');
    return { key: await loadSigningKey(pem), pem };
  }
  const made = await generateSigningKey(type);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, made.pem, { mode: 0o600, flag: 'wx' });
  log.info('made an IKE key pair', { file, type });
  return made;
}

/**
 * How long a restart keeps the old IKE socket open for the Deletes of a
 * withdrawal: the first send and the retransmissions at 1 s and 3 s (IKE's
 * default schedule), inside the router's 5 s drain (IKE_DRAIN_MS).
 */
const DELETE_GRACE_MS = 4000;

/** What a host offers for its side of a child SA: its leased ports, less the one IKE runs on. */
function offeredSelectors(shared: string, blocks: readonly HeldBlock[], ikePort: number): Ipv4Selector[] {
  return withoutUdpPort(bindingSelectors(shared, blocks), ikePort);
}

/** As responder: the peer keeps its own address, we grant only the ports we offer. */
function leasedPortsPolicy(offered: () => readonly Ipv4Selector[]): ChildPolicy {
  return (c) => {
    const ours = narrow(c.ourSelectors, offered());
    const theirs = narrow(c.peerSelectors, [hostSelector(c.remote.address)]);
    if (ours.length === 0 || theirs.length === 0) return { ok: false };
    return {
      ok: true,
      ourSelectors: ours,
      peerSelectors: theirs,
      mode: c.transportRequested ? 'transport' : 'tunnel',
    };
  };
}

/**
 * The engine and forwarder step exist from the start (the forwarder is
 * built with them); IKE itself starts once a port block and an SPI block
 * are held, and runs until stop().
 */
export class HostIke {
  readonly engine: IpsecEngine;
  readonly step: EngineIpsecStep;
  /** The leased UDP port IKE runs on (0 until chosen); the forwarder leaves it untranslated. */
  readonly servicePorts = new Set<number>();
  #service: IkeService | undefined;
  #transport: UdpTransport | undefined;
  #key: { key: SigningKey; pem: string } | undefined;
  #certificate: { serial: string; notAfter: Date } | undefined;
  #renewTimer: Timer | undefined;
  #starting = false;
  #chosenPort: number | undefined;
  #stopped = false;
  /** Serial of the certificate a withdrawal revoked, while the kept peers wait for a new one. */
  #revokedSerial: string | undefined;
  readonly revocation = new Map<RevocationEvent, number>(REVOCATION_EVENTS.map((e) => [e, 0]));
  /** Deletes a withdrawal started that have not been answered (or given up) yet. */
  readonly #deletes = new Set<Promise<void>>();
  /** Services left behind by a restart, open while their Deletes drain (#restart). */
  readonly #draining = new Set<IkeService>();
  readonly #o: HostIkeOptions;
  readonly #listener: HostLeasesListener;

  constructor(o: HostIkeOptions) {
    this.#o = o;
    const spd = new SecurityPolicyDatabase('bypass');
    const sad = new SecurityAssociationDatabase({
      isLeasedSpi: (spi) => inSpiBlocks(spi, o.leases.blocks('spi')),
    });
    // IKE to the classic ports is never sealed, whoever on this host sends it.
    spd.add(ikeBypassPolicy('ike-to-500', 500, 'remote'));
    spd.add(ikeBypassPolicy('ike-to-4500', 4500, 'remote'));
    this.engine = new IpsecEngine(spd, sad);
    this.step = EngineIpsecStep.forEngine(this.engine, IKE_MAX_ESP_OVERHEAD);
    this.#listener = {
      onBlockAdded: () => this.#leasesChanged(),
      onBlockLost: (b, reason) => {
        this.#blockLost(b, reason);
        this.#leasesChanged();
      },
    };
    o.leases.addListener(this.#listener);
  }

  get service(): IkeService | undefined {
    return this.#service;
  }

  get port(): number {
    return this.#transport?.local.port ?? 0;
  }

  /** For status: port, certificate serial and expiry. */
  summary(): string {
    if (this.#service === undefined) return 'waiting for a port block and an SPI block';
    const cert = this.#certificate;
    return `UDP ${this.#o.sharedAddress}:${this.port}, certificate ${cert ? `${cert.serial.slice(0, 16)}… until ${cert.notAfter.toISOString()}` : 'none'}`;
  }

  /** Counters for status, `ike.`-prefixed as the service's are. */
  counters(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of this.revocation) out[`ike.${k}`] = v;
    return out;
  }

  #count(e: RevocationEvent, n = 1): void {
    this.revocation.set(e, (this.revocation.get(e) ?? 0) + n);
  }

  /**
   * A withdrawn block: its certificate is on the CRL and, for SPIs, the
   * router forwards nothing for it any more. The SAs resting on either are
   * taken out of the engine at once (nothing more is sealed with them) and
   * deleted with the peer (RFC 7296 1.4.1); peers kept up wait for a new
   * certificate. A block that lapsed or was given back revokes nothing.
   */
  #blockLost(b: HeldBlock, reason: BlockLossReason): void {
    if (this.#stopped || reason !== 'withdrawn') return;
    this.#count('revocation-withdrawals');
    const service = this.#service;
    if (service === undefined) return;
    const { daemon, sad, kept } = service;
    kept.hold();
    this.#revokedSerial = this.#certificate?.serial;
    const views = daemon.sas.map((sa) => ({
      sa,
      state: sa.state,
      ownBlocks: ownBlocks(sa),
      children: sa.children,
    }));
    const plan = planRevocation<ChildSa, (typeof views)[number]>(b.kind, b, views);
    for (const v of plan.abandon) v.sa.die('our certificate was revoked');
    for (const { sa } of plan.deleteIke) {
      for (const c of sa.children) sad.remove(c.negotiated);
      this.#track(daemon.deleteIke(sa));
    }
    for (const { sa, child } of plan.deleteChildren) {
      sad.remove(child.negotiated);
      this.#track(daemon.deleteChild(sa.sa, child));
    }
    this.#count('revocation-abandoned', plan.abandon.length);
    this.#count('revocation-ike-sas-deleted', plan.deleteIke.length);
    this.#count('revocation-child-sas-deleted', plan.deleteChildren.length);
    this.#o.log.warn(`${b.kind === 'port' ? 'ports' : 'SPIs'} withdrawn: deleting the SAs resting on them`, {
      block: `${b.lowest}-${b.lowest + b.count - 1}`,
      ikeSas: plan.deleteIke.length,
      childSas: plan.deleteChildren.length,
      abandoned: plan.abandon.length,
    });
  }

  #track(deleting: Promise<void>): void {
    const settled = deleting.catch(() => undefined);
    this.#deletes.add(settled);
    void settled.then(() => this.#deletes.delete(settled));
  }

  /** After a new certificate: peers kept up may be tried again once it covers an SPI block held now. */
  #maybeResume(): void {
    const kept = this.#service?.kept;
    if (kept === undefined || !kept.held) return;
    if (this.#certificate?.serial === this.#revokedSerial) return;
    if (this.#o.leases.blocks('spi').length === 0 || this.#o.leases.blocks('port').length === 0) return;
    this.#revokedSerial = undefined;
    this.#count('revocation-resumed');
    this.#o.log.info('new certificate after the withdrawal: going back to the peers kept up', {
      serial: this.#certificate?.serial,
    });
    kept.resume();
  }

  /**
   * IKE starts over on a port held now. When the old port went in a
   * withdrawal, the Deletes telling the peers leave from it (the port the
   * peers know): the old service stays open, its port untranslated and
   * bypassing IPsec, for up to DELETE_GRACE_MS while they are retransmitted.
   * The router lets them out for a few seconds after the withdrawal and
   * drops the answers (tables/withdrawn-ports.ts), so the wait ends by the
   * grace rather than by an answer; the new service does not wait for it.
   */
  async #restart(): Promise<void> {
    const service = this.#service;
    const port = this.port;
    this.#service = undefined;
    this.#transport = undefined;
    this.#renewTimer?.cancel();
    this.#chosenPort = undefined;
    void this.#start();
    if (service === undefined) return;
    this.#draining.add(service);
    if (this.#deletes.size > 0) {
      let timer: Timer | undefined;
      await Promise.race([
        Promise.all([...this.#deletes]),
        new Promise<void>((r) => (timer = this.#o.clock.setTimeout(r, DELETE_GRACE_MS))),
      ]);
      timer?.cancel();
    }
    this.#draining.delete(service);
    await service.close();
    // Started again on the same port (held again by now): it is the new service's.
    if (port === this.port) return;
    this.servicePorts.delete(port);
    this.engine.spd.remove(`ike-${port}`);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#renewTimer?.cancel();
    this.#o.leases.removeListener(this.#listener);
    await Promise.all([this.#service?.close(), ...[...this.#draining].map((s) => s.close())]);
  }

  #leasesChanged(): void {
    if (this.#stopped) return;
    if (this.#service !== undefined && !this.#o.ports.isLeased(this.port)) {
      // The block holding IKE's port went (withdrawn, or lost with the router's state):
      // the SAs it carried are gone with it; start over on a port held now.
      this.#o.log.warn('the IKE port is no longer leased: restarting IKE on another', { port: this.port });
      void this.#restart();
      return;
    }
    if (this.#service === undefined) {
      void this.#start();
      return;
    }
    // New or lost blocks: the certificate must say so. A short pause gathers a burst of changes.
    this.#scheduleRenewal(100);
  }

  async #start(): Promise<void> {
    const { leases, ports, log } = this.#o;
    if (this.#stopped || this.#starting || this.#service !== undefined) return;
    if (leases.blocks('port').length === 0 || leases.blocks('spi').length === 0) return;
    this.#starting = true;
    try {
      const cfg = this.#o.config;
      // A port taken on an earlier, failed attempt is used again, while it is still held.
      let port = this.#chosenPort;
      if (port === undefined || !ports.isLeased(port)) {
        port = cfg.port !== undefined && ports.isLeased(cfg.port) ? cfg.port : ports.takePort();
        if (port < 0) throw new Error('no leased port free for IKE');
        this.#chosenPort = port;
      }
      this.#key ??= await hostKey(cfg.key ?? join(this.#o.stateDir, 'ike-key.pem'), cfg.keyType, log);
      const issued = await this.#requestCertificate();
      this.servicePorts.add(port);
      if (this.engine.spd.get(`ike-${port}`) === undefined)
        this.engine.spd.add(ikeBypassPolicy(`ike-${port}`, port), 0);
      const transport = await UdpTransport.open({ address: this.#o.sharedAddress, port });
      this.#transport = transport;
      if (this.#stopped) {
        transport.close();
        return;
      }
      const offered = (): Ipv4Selector[] =>
        offeredSelectors(this.#o.sharedAddress, leases.blocks('port'), port);
      this.#service = startIkeService({
        config: cfg,
        transport,
        identity: issued,
        engine: this.engine,
        spis: spiAllocatorFromBlocks(() => leases.blocks('spi')),
        childPolicy: leasedPortsPolicy(offered),
        localSelectors: offered,
        clock: this.#o.clock,
        log,
      });
      log.info('IKE running', { address: this.#o.sharedAddress, port });
    } catch (e) {
      log.error('cannot start IKE; trying again in 5 s', { error: (e as Error).message });
      this.#o.clock.setTimeout(() => {
        this.#starting = false;
        void this.#start();
      }, 5000);
      return;
    }
    this.#starting = false;
  }

  /** A certificate for the blocks held now; schedules the next request at half its life. */
  async #requestCertificate(): Promise<{ certificate: string; chain: string[]; privateKey: string }> {
    const key = this.#key!;
    const url = this.#o.config.certificateUrl ?? defaultCertificateUrl(this.#o.router);
    // The router certifies the ports of the shared address this host leases on (it may have several).
    const issued = await requestHostCertificate(
      url,
      await createCertificateRequest(key.key, undefined, this.#o.sharedAddress),
    );
    const cert = issued.certificate;
    if (this.#certificate?.serial !== cert.serialNumber)
      this.#o.log.info('host certificate from the local CA', {
        serial: cert.serialNumber,
        subject: cert.subject,
        notAfter: cert.notAfter.toISOString(),
      });
    this.#certificate = { serial: cert.serialNumber, notAfter: cert.notAfter };
    // Beside the key, for the operator (openssl x509 -in ...) and for peers configured by hand.
    writeFileSync(join(this.#o.stateDir, 'ike-cert.pem'), issued.pem);
    const now = this.#o.clock.now();
    this.#scheduleRenewal(Math.max(5000, (cert.notAfter.getTime() - now) / 2));
    return {
      certificate: cert.toString('pem'),
      chain: issued.chain.map((c) => c.toString('pem')),
      privateKey: key.pem,
    };
  }

  #scheduleRenewal(delayMs: number): void {
    this.#renewTimer?.cancel();
    this.#renewTimer = this.#o.clock.setTimeout(() => void this.#renew(), delayMs);
  }

  async #renew(): Promise<void> {
    if (this.#stopped || this.#key === undefined) return;
    if (this.#o.leases.blocks('port').length === 0) return;
    try {
      const identity = await this.#requestCertificate();
      this.#service?.daemon.setIdentity(identity);
      this.#maybeResume();
    } catch (e) {
      this.#o.log.warn('cannot renew the host certificate; trying again in 5 s', {
        error: (e as Error).message,
      });
      this.#scheduleRenewal(5000);
    }
  }
}

/** The blocks named by the certificate we authenticated an IKE SA with. */
function ownBlocks(sa: IkeSa): { ports: readonly Block[]; spis: readonly Block[] } | undefined {
  const b = sa.ownCertificate === undefined ? undefined : bindingOf(sa.ownCertificate);
  return b === undefined ? undefined : { ports: b.ports, spis: b.spis };
}
