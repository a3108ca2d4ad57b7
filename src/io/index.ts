/** Packet I/O: the public surface of src/io (see docs/io.md). */
export type { BatchHandler, IoStats, PacketDevice, PacketSink, PacketSource } from './types.ts';
export { emptyStats } from './types.ts';
export { DEFAULT_HEADROOM, DEFAULT_SLOT_COUNT, DEFAULT_SLOT_SIZE, SlotBuffer, SpanList } from './slots.ts';
export { openTun, offloadBits, TunDevice, TunOffloadFlag, tunQueueDrops, VNET_SLOT_SIZE } from './tun.ts';
export type { TunOffload, TunOptions } from './tun.ts';
export { DEFAULT_SOCKET_BUFFER, IPPROTO_RAW, openRawSender, openRawSocket, RawSocket } from './raw.ts';
export type { RawSocketOptions } from './raw.ts';
export { FdDevice } from './fd-device.ts';
export { loadNative, nativeAvailable, NativeAddonError } from './native.ts';
export {
  createDevicePair,
  MemoryDevice,
  MemoryRawNetwork,
  MemoryRawSocket,
  MemoryScheduler,
} from './memory.ts';
export type { MemoryDeviceOptions } from './memory.ts';
export { LinkType, parsePcap, PcapWriter } from './pcap.ts';
export type { PcapFile, PcapOptions, PcapRecord } from './pcap.ts';
export { capture, CapturedDevice } from './capture.ts';
export {
  completeChecksum,
  completeChecksumNative,
  nativeGsoError,
  segmentTcp4,
  segmentTcp4Native,
  vnetAction,
} from './gso.ts';
export type { GsoDrop } from './gso.ts';
export { TcpCoalescer } from './coalesce.ts';
export type { CoalesceStats } from './coalesce.ts';
export {
  newVirtioNetHdr,
  readVirtioNetHdr,
  VIRTIO_NET_HDR_LEN,
  VirtioGso,
  VirtioNetHdrFlag,
  writeVirtioNetHdr,
  zeroVirtioNetHdr,
} from './virtio.ts';
export type { VirtioNetHdr } from './virtio.ts';
