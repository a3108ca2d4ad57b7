/**
 * The command-line options bench:io and bench:dnat share (docs/benchmarks.md,
 * "Options"), and what they mean once parsed. Each benchmark adds its own.
 */
import { parseLoads, type Load } from './suite.ts';

export const COMMON_OPTIONS = {
  seconds: { type: 'string', default: '5' },
  generators: { type: 'string', default: '2' },
  loads: { type: 'string', default: 'max,200k,100k' },
  size: { type: 'string', default: '64' },
  'tun-txqueuelen': { type: 'string' },
  'bridge-netfilter': { type: 'boolean', default: false },
  profile: { type: 'string' },
  nice: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

export interface CommonSettings {
  readonly bridgeNetfilter: boolean;
  /** --profile LOAD: one more flood at that load with perf recording the forwarders. */
  readonly profile: Load | undefined;
  /** --nice N: the forwarding processes' nice value (default: as started, 0). */
  readonly nice: number | undefined;
  readonly seconds: number;
  readonly generators: number;
  readonly loads: Load[];
  readonly size: number;
}

export function commonSettings(values: {
  'bridge-netfilter': boolean;
  profile?: string;
  nice?: string;
  seconds: string;
  generators: string;
  loads: string;
  size: string;
}): CommonSettings {
  return {
    bridgeNetfilter: values['bridge-netfilter'],
    profile: values.profile === undefined ? undefined : parseLoads(values.profile)[0],
    nice: values.nice === undefined ? undefined : Number(values.nice),
    seconds: Number(values.seconds),
    generators: Number(values.generators),
    loads: parseLoads(values.loads),
    size: Number(values.size),
  };
}
