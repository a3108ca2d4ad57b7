/** The host agent (patent "network device 14/18"): what other modules and tools use. */
export { startHost } from './agent.ts';
export type { HostAgent, StartHostOptions } from './agent.ts';
export { HostForwarder } from './forwarder.ts';
export type { HostForwarderOptions, HostMode, LeaseView } from './forwarder.ts';
export { FORWARDER_EVENTS, INBOUND_DROPS, OUTBOUND_DROPS } from './drops.ts';
export type { ForwarderEvent, InboundDrop, OutboundDrop } from './drops.ts';
export { PacketSpan } from './ipsec-step.ts';
export type { IpsecDropReason, IpsecStep } from './ipsec-step.ts';
export { LeasedPortPool } from './leased-ports.ts';
export { NativePortRange, kernelPortSettings, PORT_RANGE_KEY, RESERVED_PORTS_KEY } from './native-ports.ts';
export { MemorySysctl, ProcSysctl } from './sysctl.ts';
export type { SysctlAccess } from './sysctl.ts';
export { openHostDevices, DEFAULT_LAN_MTU, DEFAULT_TUN_MTU } from './devices.ts';
export type { HostDevices } from './devices.ts';
export { fragmentDatagram, writeFragmentationNeeded } from './mtu.ts';
export { hostStatus } from './status.ts';
