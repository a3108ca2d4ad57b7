/**
 * IKEv2 (RFC 7296) for distnat: certificate authentication with the
 * router's local CA, ESP child SAs with SPIs from the leased block, on any
 * UDP port. docs/ike.md describes what is supported and how it is used.
 */
export { IkeDaemon } from './daemon.ts';
export type { IkeEventListener } from './daemon.ts';
export { IkeError, IkeSa } from './ike-sa.ts';
export type { IkeSaState } from './ike-sa.ts';
export { ChildSa } from './child-sa.ts';
export type { ChildSaState } from './child-sa.ts';
export type { IkeEvent } from './ike-sa.ts';
export type { ChildRequest, IkeDaemonOptions, LocalIdentity, LogLevel, RetransmitOptions } from './config.ts';
export {
  bindingOf,
  hostToHostPolicy,
  portBindingAuthorizer,
  randomSpiAllocator,
  selectorPolicy,
  spiAllocatorFromBlocks,
} from './policy.ts';
export type {
  Authorization,
  ChildContext,
  ChildDecision,
  ChildPolicy,
  ChildSaDatabase,
  ChildSaKeys,
  NegotiatedChildSa,
  PeerAuthorizer,
  PeerContext,
  SpiAllocator,
} from './policy.ts';
export { MemoryNetwork, MemoryTransport } from './transport.ts';
export type { Endpoint, IkeReceiveHandler, IkeTransport } from './transport.ts';
export { UdpTransport } from './udp-transport.ts';
export type { UdpTransportOptions } from './udp-transport.ts';
export { DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_PROPOSALS, parseProposal } from './proposal.ts';
export type { ProposalConfig } from './proposal.ts';
export { bindingSelectors, describeSelector, hostSelector, subnetSelector } from './selectors.ts';
export type { Ipv4Selector } from './selectors.ts';
export { describeId, loadCertificates } from './certs.ts';
export type { IdentitySpec, TrustAnchors } from './certs.ts';
export { childSaParams } from './ipsec-bridge.ts';
