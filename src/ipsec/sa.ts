/**
 * Security associations (RFC 4301 4.4.2): what one direction of one
 * protected flow needs per packet. An SA is built once (keys checked,
 * cipher contexts made) and then only its counters change.
 *
 * | field            | RFC 4301 4.4.2.1 SAD field                        |
 * |------------------|---------------------------------------------------|
 * | spi              | Security Parameter Index                          |
 * | seq              | Sequence Number Counter (outbound)                |
 * | replay           | Anti-Replay Window (inbound)                      |
 * | esn              | 64-bit counter flag                               |
 * | lifetime         | Lifetime of this SA (bytes and packets here; time |
 * |                  | is the key manager's to watch)                    |
 * | transform / hmac | ESP / AH algorithms, keys, modes, IVs             |
 * | mode, tunnel     | IPsec protocol mode, tunnel header addresses      |
 * | encap            | RFC 3948 UDP encapsulation ports                  |
 * | policy           | the SPD entry the SA was made for                 |
 */
import { MIN_SPI } from '../wire/esp.ts';
import { createEspTransform } from './esp-transform.ts';
import { Hmac } from './hmac.ts';
import { DEFAULT_REPLAY_WINDOW, ReplayWindow } from './replay-window.ts';
import type {
  EspEncryption,
  EspTransform,
  IntegrityAlgorithm,
  IpsecMode,
  IvSource,
  SaDirection,
} from './types.ts';

/** Limits counted over the data protected (inner packets). Soft warns the key manager; hard stops the SA. */
export interface SaLifetime {
  readonly softBytes?: number;
  readonly hardBytes?: number;
  readonly softPackets?: number;
  readonly hardPackets?: number;
}

/** The outer header's addresses in tunnel mode, from this end's point of view. */
export interface TunnelEndpoints {
  readonly local: number;
  readonly remote: number;
}

/** ESP-in-UDP (RFC 3948): the UDP ports of this end and of the peer, usually 4500 and 4500. */
export interface UdpEncap {
  readonly localPort: number;
  readonly remotePort: number;
}

interface SaParamsBase {
  /** 256..2^32-1. */
  readonly spi: number;
  readonly direction: SaDirection;
  readonly mode: IpsecMode;
  /** Required in tunnel mode. */
  readonly tunnel?: TunnelEndpoints;
  readonly esn?: boolean;
  /** Inbound only: 0 turns anti-replay off (not allowed with ESN); default 64. */
  readonly replayWindow?: number;
  readonly lifetime?: SaLifetime;
  /** For status output and logs. */
  readonly name?: string;
}

export interface EspSaParams extends SaParamsBase {
  readonly encryption: EspEncryption;
  readonly encryptionKey?: Uint8Array;
  readonly integrity?: IntegrityAlgorithm;
  readonly integrityKey?: Uint8Array;
  readonly encap?: UdpEncap;
  /** Overrides IV generation (known-answer tests). */
  readonly iv?: IvSource;
}

export interface AhSaParams extends SaParamsBase {
  readonly integrity: IntegrityAlgorithm;
  readonly integrityKey: Uint8Array;
}

/** Largest outbound sequence number: 2^32 - 1, or with ESN the largest exact JS integer. */
const MAX_SEQ_32 = 0xffff_ffff;
const MAX_SEQ_ESN = Number.MAX_SAFE_INTEGER;

/** A lifetime limit that is never reached. */
const NEVER = Number.POSITIVE_INFINITY;

function checkSpi(spi: number): void {
  if (!Number.isInteger(spi) || spi < MIN_SPI || spi > 0xffff_ffff) {
    throw new RangeError(`SPI must be ${MIN_SPI}..4294967295 (1-${MIN_SPI - 1} are reserved), got ${spi}`);
  }
}

abstract class SaBase {
  readonly spi: number;
  readonly direction: SaDirection;
  readonly mode: IpsecMode;
  readonly tunnel: TunnelEndpoints | null;
  readonly esn: boolean;
  /** Inbound with anti-replay on; null otherwise. */
  readonly replay: ReplayWindow | null;
  readonly name: string;
  /** Outbound: the last sequence number sent (0 before the first packet, RFC 4303 3.3.3). */
  seq = 0;
  /** Packets and bytes of data protected or accepted. */
  packets = 0;
  bytes = 0;
  softExpired = false;
  hardExpired = false;
  private readonly softBytes: number;
  private readonly hardBytes: number;
  private readonly softPackets: number;
  private readonly hardPackets: number;
  private readonly maxSeq: number;
  /** Called once when a lifetime limit is first crossed; the SAD installs it. */
  onLifetime: ((sa: SecurityAssociation, kind: 'soft' | 'hard') => void) | null = null;

  constructor(p: SaParamsBase) {
    checkSpi(p.spi);
    if (p.direction !== 'inbound' && p.direction !== 'outbound') {
      throw new RangeError(`direction must be inbound or outbound, got ${String(p.direction)}`);
    }
    if (p.mode !== 'transport' && p.mode !== 'tunnel') {
      throw new RangeError(`mode must be transport or tunnel, got ${String(p.mode)}`);
    }
    if (p.mode === 'tunnel' && p.tunnel === undefined)
      throw new RangeError('tunnel mode needs tunnel endpoints');
    this.spi = p.spi >>> 0;
    this.direction = p.direction;
    this.mode = p.mode;
    this.tunnel = p.mode === 'tunnel' ? p.tunnel! : null;
    this.esn = p.esn === true;
    this.name = p.name ?? `0x${this.spi.toString(16).padStart(8, '0')}`;
    const window = p.replayWindow ?? DEFAULT_REPLAY_WINDOW;
    if (this.esn && window === 0) {
      throw new RangeError('ESN needs an anti-replay window to infer the high sequence bits');
    }
    this.replay = p.direction === 'inbound' && window > 0 ? new ReplayWindow(window, this.esn) : null;
    const lt = p.lifetime ?? {};
    this.softBytes = lt.softBytes ?? NEVER;
    this.hardBytes = lt.hardBytes ?? NEVER;
    this.softPackets = lt.softPackets ?? NEVER;
    this.hardPackets = lt.hardPackets ?? NEVER;
    this.maxSeq = this.esn ? MAX_SEQ_ESN : MAX_SEQ_32;
  }

  /** The next outbound sequence number, or -1 when the counter must not advance (RFC 4303 3.3.3). */
  nextSequence(): number {
    if (this.seq >= this.maxSeq) return -1;
    return ++this.seq;
  }

  /** ESN high half of a 64-bit sequence number as the ICV needs it, or -1 without ESN. */
  seqHigh(seq: number): number {
    return this.esn ? Math.floor(seq / 0x1_0000_0000) : -1;
  }

  /** Counts one packet of `bytes` data against the lifetime. */
  account(bytes: number): void {
    this.packets += 1;
    this.bytes += bytes;
    if (this.packets >= this.hardPackets || this.bytes >= this.hardBytes) {
      if (!this.hardExpired) {
        this.hardExpired = true;
        this.onLifetime?.(this as unknown as SecurityAssociation, 'hard');
      }
    } else if (!this.softExpired && (this.packets >= this.softPackets || this.bytes >= this.softBytes)) {
      this.softExpired = true;
      this.onLifetime?.(this as unknown as SecurityAssociation, 'soft');
    }
  }
}

export class EspSa extends SaBase {
  readonly protocol = 'esp' as const;
  readonly transform: EspTransform;
  readonly encap: UdpEncap | null;

  /** Throws RangeError for parameters that cannot work; keys are checked against the algorithms. */
  constructor(p: EspSaParams) {
    super(p);
    this.transform = createEspTransform(p);
    this.encap = p.encap ?? null;
    if (this.encap !== null) {
      for (const port of [this.encap.localPort, this.encap.remotePort]) {
        if (!Number.isInteger(port) || port < 1 || port > 65535) {
          throw new RangeError(`UDP encapsulation port must be 1..65535, got ${port}`);
        }
      }
    }
  }
}

export class AhSa extends SaBase {
  readonly protocol = 'ah' as const;
  readonly hmac: Hmac;
  /** The AH header with its ICV, padded to 4 bytes (RFC 4302 2.2): 12 + ICV. */
  readonly headerLength: number;

  constructor(p: AhSaParams) {
    super(p);
    this.hmac = new Hmac(p.integrity, p.integrityKey);
    this.headerLength = 12 + Math.ceil(this.hmac.icvLength / 4) * 4;
  }
}

export type SecurityAssociation = EspSa | AhSa;
