/**
 * The daemons' side of a Type=notify unit: READY=1 once started, the
 * watchdog's pings, SIGHUP as a reload bracketed by RELOADING=1 and READY=1
 * that applies the log level and names what waits for a restart, and
 * STOPPING=1. A recording notifier stands in for systemd, whose own reading
 * is shown in test/netns/units-nspawn.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import winston from 'winston';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { changedFields, configReloader } from '../../../src/cli/reload.ts';
import { announceService } from '../../../src/cli/service.ts';
import type { NotifyFields, ServiceNotifier } from '../../../src/io/sd-notify.ts';
import { readConfigFile, validateConfig } from '../../../src/config/load.ts';
import { RouterConfigSchema } from '../../../src/config/router-config.ts';
import { createLogger } from '../../../src/util/log.ts';

const dir = mkdtempSync(join(tmpdir(), 'distnat-service-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  process.removeAllListeners('SIGHUP');
  vi.useRealTimers();
});

function recorder(watchdogIntervalMs?: number): ServiceNotifier & { sent: NotifyFields[] } {
  const sent: NotifyFields[] = [];
  return {
    sent,
    listening: true,
    watchdogIntervalMs,
    notify: (f) => {
      sent.push(f);
      return undefined;
    },
  };
}

/** A logger whose entries are kept (its JSON lines, parsed). */
function recordingLog() {
  const log = createLogger({ json: true, journal: false });
  const entries: { level: string; message: string; field?: string }[] = [];
  const stream = new PassThrough();
  stream.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n').filter(Boolean))
      entries.push(JSON.parse(line) as (typeof entries)[number]);
  });
  log.clear().add(new winston.transports.Stream({ stream }));
  return { log, entries };
}

const settle = () => new Promise((r) => setTimeout(r, 10));

describe('announceService', () => {
  it('says READY=1 with a status line, and STOPPING=1 when the stop begins', () => {
    const n = recorder();
    const { log } = recordingLog();
    const s = announceService({ log, status: 'routing', notifier: n });
    expect(n.sent).toEqual([{ READY: 1, STATUS: 'routing' }]);
    s.stopping();
    expect(n.sent[1]).toMatchObject({ STOPPING: 1 });
  });

  it('pings the watchdog from the event loop until the stop', () => {
    vi.useFakeTimers();
    const n = recorder(5000);
    const { log } = recordingLog();
    const s = announceService({ log, status: 'x', notifier: n });
    vi.advanceTimersByTime(15_000);
    expect(n.sent.filter((f) => f.WATCHDOG === 1)).toHaveLength(3);
    s.stopping();
    vi.advanceTimersByTime(15_000);
    expect(n.sent.filter((f) => f.WATCHDOG === 1)).toHaveLength(3);
  });

  it('on SIGHUP: RELOADING=1 with the monotonic clock, the reload, then READY=1 again', async () => {
    const n = recorder();
    const { log } = recordingLog();
    const reload = vi.fn(() => {
      expect(n.sent.at(-1)).toMatchObject({ RELOADING: 1 });
    });
    announceService({ log, status: 'routing', notifier: n, reload });
    process.emit('SIGHUP', 'SIGHUP');
    await settle();
    expect(reload).toHaveBeenCalledOnce();
    expect(n.sent.slice(1).map((f) => Object.keys(f)[0])).toEqual(['RELOADING', 'READY']);
    expect(String(n.sent[1]!.MONOTONIC_USEC)).toMatch(/^\d+$/);
  });

  it('without a reload step, SIGHUP only says so (and the process lives on)', async () => {
    const n = recorder();
    const { log, entries } = recordingLog();
    announceService({ log, status: 'peer', notifier: n });
    process.emit('SIGHUP', 'SIGHUP');
    await settle();
    expect(entries.map((e) => e.message)).toEqual([
      'SIGHUP: nothing to read again; restart to apply changes',
    ]);
    expect(n.sent).toHaveLength(1);
  });
});

describe('configReloader', () => {
  const file = join(dir, 'router.yaml');
  const read = () => validateConfig(RouterConfigSchema, readConfigFile(file), file);
  const write = (extra: string) =>
    writeFileSync(file, `sharedAddress: 198.51.100.30\nlanAddress: 10.0.0.7\n${extra}`);

  it('applies logLevel, names each other changed field at every reload until a restart', () => {
    write('');
    const running = read();
    const { log, entries } = recordingLog();
    const reload = configReloader({ log, file, running, read });
    write('logLevel: debug\npap: { blockSize: 64 }\n');
    reload();
    expect(log.level).toBe('debug');
    expect(entries.filter((e) => e.level === 'warn').map((e) => e.field)).toEqual(['pap']);
    expect(entries.at(-1)).toMatchObject({ level: 'info', message: 'configuration re-read' });
    entries.length = 0;
    reload();
    expect(entries.filter((e) => e.level === 'warn').map((e) => e.field)).toEqual(['pap']);
  });

  it('keeps running as it was when the file has become invalid, saying why', () => {
    write('');
    const running = read();
    const { log, entries } = recordingLog();
    const reload = configReloader({ log, file, running, read });
    write('logLevel: loud\n');
    reload();
    expect(log.level).toBe('info');
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ level: 'error' });
    expect(entries[0]!.message).toMatch(/not re-read/);
  });

  it('has nothing to re-read when started on flags alone', () => {
    const { log, entries } = recordingLog();
    configReloader({
      log,
      file: undefined,
      running: { logLevel: 'info' },
      read: () => ({ logLevel: 'debug' }),
    })();
    expect(log.level).toBe('info');
    expect(entries[0]?.message).toMatch(/no configuration file/);
  });

  it('compares fields by value', () => {
    expect(changedFields({ a: { b: 1 }, c: 2 }, { a: { b: 1 }, c: 3, d: 4 })).toEqual(['c', 'd']);
  });
});
