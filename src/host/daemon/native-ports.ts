/**
 * Native mode (patent Method 130, step 136): the kernel's own ephemeral
 * ports become the leased ones, so nothing needs translating. Linux picks
 * ephemeral ports for connect() and for unbound UDP sends from
 * net.ipv4.ip_local_port_range (one contiguous range per network namespace)
 * and skips those listed in net.ipv4.ip_local_reserved_ports. With several
 * leased blocks the range is their hull and the gaps between them are
 * reserved, on top of whatever was reserved before.
 *
 * Not covered by the range: ICMP echo identifiers of ping sockets (Linux
 * ping_get_port counts through all identifiers on its own) and of raw-socket
 * pings (iputils uses its pid); those go through the translation table in
 * native mode too. Sockets bound to an explicit port are the application's
 * business: a port outside the blocks is dropped ('unleased-port').
 *
 * The values found at start are written to a state file before anything is
 * changed, so a restart after a crash restores the true originals, not the
 * leased range the crashed agent left behind.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Block } from '../../util/block.ts';
import type { SysctlAccess } from './sysctl.ts';

export const PORT_RANGE_KEY = 'net/ipv4/ip_local_port_range';
export const RESERVED_PORTS_KEY = 'net/ipv4/ip_local_reserved_ports';

interface Saved {
  readonly range: string;
  readonly reserved: string;
}

type Range = readonly [number, number];

/** "1,5-7,9" -> [[1,1],[5,7],[9,9]]; tolerant of spaces, drops what does not parse. */
export function parsePortList(text: string): Range[] {
  const out: Range[] = [];
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)(?:\s*-\s*(\d+))?\s*$/.exec(part);
    if (m === null) continue;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (lo <= hi && hi <= 65535) out.push([lo, hi]);
  }
  return out;
}

/** Sorted, merged, as the kernel prints it. */
export function formatPortList(ranges: readonly Range[]): string {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const [lo, hi] of sorted) {
    const last = merged[merged.length - 1];
    if (last !== undefined && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else merged.push([lo, hi]);
  }
  return merged.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(',');
}

/** The range and reserved list that make the kernel pick only ports of `blocks`; undefined for none. */
export function kernelPortSettings(
  blocks: readonly Block[],
  alreadyReserved: readonly Range[] = [],
): { range: Range; reserved: string } | undefined {
  if (blocks.length === 0) return undefined;
  const sorted = [...blocks].sort((a, b) => a.lowest - b.lowest);
  const gaps: Range[] = [];
  let end = sorted[0]!.lowest + sorted[0]!.count;
  for (const b of sorted.slice(1)) {
    if (b.lowest > end) gaps.push([end, b.lowest - 1]);
    end = Math.max(end, b.lowest + b.count);
  }
  return { range: [sorted[0]!.lowest, end - 1], reserved: formatPortList([...alreadyReserved, ...gaps]) };
}

export class NativePortRange {
  #saved: Saved | undefined;
  #current = '';

  constructor(
    private readonly sysctl: SysctlAccess,
    /** Where the originals are kept; undefined: memory only. */
    private readonly stateFile: string | undefined,
  ) {}

  /** The settings as found (or as a crashed run found them); call before apply. */
  begin(): { range: string; reserved: string; fromCrash: boolean } {
    let fromCrash = false;
    let saved: Saved | undefined;
    if (this.stateFile !== undefined) {
      try {
        const parsed = JSON.parse(readFileSync(this.stateFile, 'utf8')) as Partial<Saved>;
        if (typeof parsed.range === 'string' && typeof parsed.reserved === 'string') {
          saved = { range: parsed.range, reserved: parsed.reserved };
          fromCrash = true;
        }
      } catch {
        // no state file: a clean start
      }
    }
    if (saved === undefined) {
      saved = { range: this.sysctl.read(PORT_RANGE_KEY), reserved: this.sysctl.read(RESERVED_PORTS_KEY) };
      if (this.stateFile !== undefined) {
        mkdirSync(dirname(this.stateFile), { recursive: true });
        writeFileSync(this.stateFile, JSON.stringify(saved) + '\n');
      }
    }
    this.#saved = saved;
    return { ...saved, fromCrash };
  }

  /**
   * Points the kernel at `blocks`. With none it leaves the last range in
   * place: an empty range cannot be expressed, and the forwarder drops what
   * leaves from unleased ports anyway. Returns the range set, or undefined
   * when nothing changed.
   */
  apply(blocks: readonly Block[]): { range: Range; reserved: string } | undefined {
    if (this.#saved === undefined) throw new Error('NativePortRange.apply before begin');
    const s = kernelPortSettings(blocks, parsePortList(this.#saved.reserved));
    if (s === undefined) return undefined;
    const key = `${s.range[0]} ${s.range[1]} ${s.reserved}`;
    if (key === this.#current) return undefined;
    // Reserve the gaps before widening the range, so no moment lets the kernel pick a gap port.
    this.sysctl.write(RESERVED_PORTS_KEY, s.reserved);
    this.sysctl.write(PORT_RANGE_KEY, `${s.range[0]} ${s.range[1]}`);
    this.#current = key;
    return s;
  }

  /** Puts the original values back and forgets the state file. */
  restore(): void {
    const saved = this.#saved;
    if (saved === undefined) return;
    this.sysctl.write(PORT_RANGE_KEY, saved.range.replace(/\s+/, ' '));
    this.sysctl.write(RESERVED_PORTS_KEY, saved.reserved);
    this.#saved = undefined;
    this.#current = '';
    if (this.stateFile !== undefined) rmSync(this.stateFile, { force: true });
  }
}
