/**
 * The host forwarder's IpsecStep over the userspace IpsecEngine, keyed by a
 * manual keying file.
 *
 * The patent's order holds because the forwarder calls protect() after
 * port translation and verify() before translating back: the SPD therefore
 * sees the shared address and the leased (translated) port in both
 * directions, never the local stack's own port. Policies name the shared
 * address and leased ports, or only protocol and remote.
 *
 * Inbound SAs must use SPIs of a block the router leased to this host (the
 * router demultiplexes ESP and AH by SPI, FIG. 21). The SAs are installed
 * once every inbound SPI the file names lies in a held block; until then the
 * step fails closed: protected traffic (and any traffic, since the SPD is
 * not yet known to be complete) is dropped as 'ipsec-no-sa'.
 */
import type { HeldBlock } from '../../pap/held-block.ts';
import { buildManualKeying, IpsecEngine, PacketSpan } from '../../ipsec/index.ts';
import type { InboundVerdict, ManualKeyingConfig, OutboundVerdict } from '../../ipsec/index.ts';
import type { IpsecDropReason, IpsecStep } from './ipsec-step.ts';

/** How the engine's verdicts fold into the forwarder's four drop reasons (the engine keeps the detail). */
export function ipsecDropOf(v: OutboundVerdict | InboundVerdict): IpsecDropReason | null {
  switch (v) {
    case 'protected':
    case 'accepted':
    case 'bypass':
    case 'ike':
      return null;
    case 'no-sa':
    case 'seq-exhausted':
    case 'lifetime-expired':
      return 'ipsec-no-sa';
    case 'replay':
    case 'too-old':
      return 'ipsec-replay';
    case 'auth-failed':
    case 'bad-padding':
      return 'ipsec-auth-failed';
    default:
      // policy-mismatch, policy-discard, and what the SPD did not let through intact
      // (malformed, fragment, no-room, dummy, nat-keepalive, ecn-drop).
      return 'ipsec-policy';
  }
}

/** The inbound SPIs a manual keying file needs leased (nested inner SAs are never seen by the router). */
export function leasedSpisNeeded(cfg: ManualKeyingConfig): number[] {
  return cfg.sas.filter((s) => s.direction === 'inbound' && !s.nested).map((s) => s.spi);
}

/** Whether `spi` lies in one of `blocks` (SPI blocks held by this host). */
export function inSpiBlocks(spi: number, blocks: readonly HeldBlock[]): boolean {
  return blocks.some((b) => b.kind === 'spi' && spi >= b.lowest && spi < b.lowest + b.count);
}

export class EngineIpsecStep implements IpsecStep {
  #engine: IpsecEngine | null = null;
  #maxOverhead: number;
  /** The engine's view of the packet: the forwarder's span with the room around it, and untouched on a refusal. */
  readonly #span = new PacketSpan();
  readonly #config: ManualKeyingConfig;
  readonly #source: string;
  /** Packets refused because the SAs were not installed yet (also counted as 'ipsec-no-sa'). */
  notInstalled = 0;

  constructor(config: ManualKeyingConfig, source = 'manual keying') {
    this.#config = config;
    this.#source = source;
    // Known before the SAs are installed so the forwarder's MTU sum holds from the start.
    const probe = buildManualKeying(config, { source });
    this.#maxOverhead = new IpsecEngine(probe.spd, probe.sad).maxOverhead();
  }

  /**
   * A step over an engine whose SAs come and go (IKE). `maxOverhead` is the
   * worst the negotiable transforms can add, fixed from the start: the local
   * stack learns one path MTU, not one per SA generation.
   */
  static forEngine(engine: IpsecEngine, maxOverhead: number, source = 'IKE'): EngineIpsecStep {
    const step = new EngineIpsecStep(
      { defaultAction: engine.spd.defaultAction, policies: [], sas: [] },
      source,
    );
    step.#engine = engine;
    step.#maxOverhead = maxOverhead;
    return step;
  }

  get maxOverhead(): number {
    return this.#maxOverhead;
  }

  /** The engine once installed (status and tests). */
  get engine(): IpsecEngine | null {
    return this.#engine;
  }

  get installed(): boolean {
    return this.#engine !== null;
  }

  /** The inbound SPIs that must be leased before install() succeeds. */
  get spisNeeded(): number[] {
    return leasedSpisNeeded(this.#config);
  }

  /**
   * Builds the SPD and SAD with the lease test; throws ConfigError naming
   * each inbound SA whose SPI is not leased. Installs once: rebuilding would
   * restart sequence numbers and replay windows under the same keys.
   */
  install(isLeasedSpi: (spi: number) => boolean, identification?: number): IpsecEngine {
    if (this.#engine !== null) return this.#engine;
    const { spd, sad } = buildManualKeying(this.#config, { source: this.#source, isLeasedSpi });
    this.#engine = new IpsecEngine(spd, sad, identification === undefined ? {} : { identification });
    this.#maxOverhead = this.#engine.maxOverhead();
    return this.#engine;
  }

  protect(buf: Uint8Array, span: PacketSpan, headroom: number, tailroom: number): IpsecDropReason | null {
    const engine = this.#engine;
    if (engine === null) {
      this.notInstalled++;
      return 'ipsec-no-sa';
    }
    const s = this.#span.set(
      span.offset,
      span.length,
      span.offset - headroom,
      span.offset + span.length + tailroom,
    );
    const refused = ipsecDropOf(engine.outbound(buf, s));
    if (refused !== null) return refused;
    span.offset = s.offset;
    span.length = s.length;
    return null;
  }

  verify(buf: Uint8Array, span: PacketSpan): IpsecDropReason | null {
    const engine = this.#engine;
    if (engine === null) {
      this.notInstalled++;
      return 'ipsec-no-sa';
    }
    // Inbound processing only removes bytes: the room is the packet itself.
    const s = this.#span.set(span.offset, span.length, span.offset, span.offset + span.length);
    const refused = ipsecDropOf(engine.inbound(buf, s));
    if (refused !== null) return refused;
    span.offset = s.offset;
    span.length = s.length;
    return null;
  }

  /** Engine verdict counters, flattened for status (`ipsec.outbound.protected`, `ipsec.inbound.replay` ...). */
  counters(): Record<string, number> {
    const out: Record<string, number> = { 'ipsec.not-installed': this.notInstalled };
    if (this.#engine === null) return out;
    const c = this.#engine.counters;
    for (const [k, v] of Object.entries(c.outbound)) out[`ipsec.outbound.${k}`] = v;
    for (const [k, v] of Object.entries(c.inbound)) out[`ipsec.inbound.${k}`] = v;
    return out;
  }
}
