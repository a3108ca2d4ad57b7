/**
 * Idle timers of the source port translation table, in milliseconds. The
 * host agent is the NAT here (it rewrites ports), so the NAT behaviour RFCs'
 * lower bounds apply to it.
 */
export interface TranslationTimeouts {
  /** RFC 4787 REQ-5: a UDP mapping MUST NOT expire in less than 2 min; 5 min RECOMMENDED. */
  readonly udpMs: number;
  /** RFC 5382 REQ-5: established TCP MUST NOT be dropped before 2 h 4 min idle. */
  readonly tcpEstablishedMs: number;
  /** RFC 5382 REQ-5: partially open or closing TCP, at least 4 min (2 MSL). */
  readonly tcpTransitoryMs: number;
  /** RFC 5508 REQ-1: an ICMP query mapping MUST NOT expire in less than 60 s. */
  readonly icmpMs: number;
}

export const DEFAULT_TRANSLATION_TIMEOUTS: TranslationTimeouts = {
  udpMs: 5 * 60_000,
  tcpEstablishedMs: (2 * 60 + 4) * 60_000,
  tcpTransitoryMs: 4 * 60_000,
  icmpMs: 60_000,
};

/** The RFCs' floors; configured values below them are raised to them. */
export const MINIMUM_TRANSLATION_TIMEOUTS: TranslationTimeouts = {
  udpMs: 2 * 60_000,
  tcpEstablishedMs: (2 * 60 + 4) * 60_000,
  tcpTransitoryMs: 4 * 60_000,
  icmpMs: 60_000,
};

/** Defaults overridden by `partial`, each raised to its RFC floor unless `allowBelowRfc` (tests). */
export function resolveTimeouts(
  partial: Partial<TranslationTimeouts> = {},
  allowBelowRfc = false,
): TranslationTimeouts {
  const t = { ...DEFAULT_TRANSLATION_TIMEOUTS, ...partial };
  if (allowBelowRfc) return t;
  const min = MINIMUM_TRANSLATION_TIMEOUTS;
  return {
    udpMs: Math.max(t.udpMs, min.udpMs),
    tcpEstablishedMs: Math.max(t.tcpEstablishedMs, min.tcpEstablishedMs),
    tcpTransitoryMs: Math.max(t.tcpTransitoryMs, min.tcpTransitoryMs),
    icmpMs: Math.max(t.icmpMs, min.icmpMs),
  };
}
