export * from './result.ts';
export * from './checksum.ts';
export * from './ipv4.ts';
