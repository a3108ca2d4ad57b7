export * from './result.ts';
export * from './checksum.ts';
export * from './ipv4.ts';
export * from './tcp.ts';
export * from './tcp-options.ts';
export * from './udp.ts';
export * from './ipip.ts';
