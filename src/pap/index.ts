export type {
  Block,
  KindedBlock,
  PortBlock,
  PortPreference,
  ResourceKind,
  SpiBlock,
  ValueRange,
} from './block.ts';
export {
  DEFAULT_BLOCK,
  MAX_BLOCK,
  PORT_PREFERENCE_SPLIT,
  PORT_RANGE,
  SPI_RANGE,
  blockContains,
  blockEnd,
  blocksOverlap,
  formatBlock,
} from './block.ts';
export { BlockPool } from './block-pool.ts';
export { ResourcePool } from './resource-pool.ts';
export type { HostAddress, Lease, LeaseAnswer, LeaseEndReason, LeaseListener, LeaseStatus } from './lease.ts';
export type { LeaseTableOptions, RenewParams, RequestParams } from './lease-config.ts';
export { LeaseTable } from './lease-table.ts';
export type { DurableFiles, Recovery } from './lease-store.ts';
export { FileStateDir, LeaseStore, MemoryFiles } from './lease-store.ts';
export type { QuarantineRecord } from './journal.ts';
export { HeldBlock } from './held-block.ts';
export type { BlockLossReason, HostLeasesListener, HostLeasesOptions } from './host-leases.ts';
export { HostLeases, RENEW_AT } from './host-leases.ts';
export type { NumericLeaseBlock, NumericLeaseSink } from './router-link.ts';
export { numericLeaseListener } from './router-link.ts';
export type { Fate, PapPeer, PapTransport } from './transport.ts';
export { MemoryNetwork } from './transport.ts';
export type { PapServerCounters } from './pap-server.ts';
export { PapServer, STATUS_CODE, responseOf } from './pap-server.ts';
export type {
  PapClientCounters,
  PapClientOptions,
  PapOutcome,
  PapOutcomeStatus,
  RetransmitPolicy,
} from './pap-client.ts';
export { PapClient } from './pap-client.ts';
