export { ahOverhead, ahProtect, ahUnprotect } from './ah-processing.ts';
export { IpsecEngine, INBOUND_VERDICTS, MAX_LAYERS, OUTBOUND_VERDICTS } from './engine.ts';
export type { IpsecEngineOptions } from './engine.ts';
export { espMaxOverhead, espOverhead, espProtect, espUnprotect } from './esp-processing.ts';
export { createEspTransform } from './esp-transform.ts';
export type { EspTransformParams } from './esp-transform.ts';
export type { EspTransform, IvSource } from './types.ts';
export { Hmac, INTEGRITY_ALGORITHMS, integrityIcvLength, integrityKeyLength } from './hmac.ts';
export {
  DEFAULT_REPLAY_WINDOW,
  MAX_REPLAY_WINDOW,
  ReplayWindow,
  REPLAY_DUPLICATE,
  REPLAY_TOO_OLD,
} from './replay-window.ts';
export { AhSa, EspSa } from './sa.ts';
export type {
  AhSaParams,
  EspSaParams,
  SaLifetime,
  SecurityAssociation,
  TunnelEndpoints,
  UdpEncap,
} from './sa.ts';
export { SecurityAssociationDatabase } from './sad.ts';
export type { SadOptions, SaInstallError } from './sad.ts';
export { ANY_ADDRESS, ANY_PORT, cidrRange, PacketSelectors, selector, selectorMatches } from './selector.ts';
export type { Range, TrafficSelector } from './selector.ts';
export { SecurityPolicy, SecurityPolicyDatabase } from './spd.ts';
export type { PolicyAction, PolicyDirection, SecurityPolicyParams } from './spd.ts';
export { IdentificationCounter } from './tunnel.ts';
export { PacketSpan } from './types.ts';
export type {
  EspEncryption,
  InboundVerdict,
  IntegrityAlgorithm,
  IpsecDrop,
  IpsecMode,
  IpsecProtocol,
  OutboundVerdict,
  SaDirection,
} from './types.ts';
export { buildManualKeying } from './manual-build.ts';
export { ManualKeyingSchema, parseManualKeying, readManualKeying } from './manual-config.ts';
export type { ManualKeyingConfig } from './manual-config.ts';
export { parseAddressRange, parsePortRange, PROTOCOL_NUMBERS } from './selector-text.ts';
