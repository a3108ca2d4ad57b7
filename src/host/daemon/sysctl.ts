/**
 * Kernel settings the host agent changes, behind an interface so native
 * mode is testable without root: /proc/sys for real, a map in tests.
 */
import { readFileSync, writeFileSync } from 'node:fs';

export interface SysctlAccess {
  /** The value as the kernel prints it, trimmed; throws if the key does not exist. */
  read(key: string): string;
  /** Throws with the errno (EPERM, EINVAL ...) if the kernel refuses. */
  write(key: string, value: string): void;
}

/** Keys in slash form under /proc/sys, e.g. 'net/ipv4/ip_local_port_range' (per network namespace). */
export class ProcSysctl implements SysctlAccess {
  constructor(private readonly root = '/proc/sys') {}

  read(key: string): string {
    return readFileSync(`${this.root}/${key}`, 'utf8').trim();
  }

  write(key: string, value: string): void {
    // As echo does: a write of no bytes leaves some settings (ip_local_reserved_ports) unchanged.
    writeFileSync(`${this.root}/${key}`, `${value}\n`);
  }
}

/** In memory, for tests; `writes` records every change in order. */
export class MemorySysctl implements SysctlAccess {
  readonly values = new Map<string, string>();
  readonly writes: { key: string; value: string }[] = [];

  constructor(initial: Record<string, string> = {}) {
    for (const [k, v] of Object.entries(initial)) this.values.set(k, v);
  }

  read(key: string): string {
    const v = this.values.get(key);
    if (v === undefined) throw Object.assign(new Error(`no sysctl ${key}`), { code: 'ENOENT' });
    return v;
  }

  write(key: string, value: string): void {
    this.values.set(key, value);
    this.writes.push({ key, value });
  }
}
