export { PeerForwarder } from './forwarder.ts';
export type { PeerDevices } from './forwarder.ts';
export { mirrorManualKeying } from './mirror.ts';
export { loadPeerKeying, startPeer } from './peer.ts';
export type { Peer, PeerOptions, PeerRoute } from './peer.ts';
