export { formatIpv4 } from './block-ledger.ts';
export type { BlockChange, BlockRow } from './block-ledger.ts';
export { PortTable } from './port-table.ts';
export type { PortBlockRow } from './port-table.ts';
export { SpiTable } from './spi-table.ts';
export type { SpiBlockRow } from './spi-table.ts';
export { U32Map } from './u32-map.ts';
export { Iaptt, DEFAULT_IAPTT_IDLE, protocolSlot } from './iaptt.ts';
export type { IapttIdle, IapttRow } from './iaptt.ts';
export { FragmentTable } from './fragment-table.ts';
export type { FragmentTableOptions, FragmentTableCounters } from './fragment-table.ts';
export { FragmentHold } from './fragment-hold.ts';
export type { FragmentHoldOptions, FragmentHoldCounters, HeldFragmentSink } from './fragment-hold.ts';
export { RouterTables } from './router-tables.ts';
export type {
  LeaseBlock,
  LeaseListener,
  RouterTablesOptions,
  RouterTablesCounters,
} from './router-tables.ts';
export { formatPortTable, formatSpiTable, formatIaptt } from './status.ts';
