/**
 * sd_notify through the native addon, received by Python's socket module on
 * the service manager's side (an AF_UNIX datagram socket at a path, or in the
 * abstract namespace as systemd spells it with '@'), and the notifier's
 * reading of the environment systemd sets.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { notifyMessage, serviceNotifier } from '../../../src/io/sd-notify.ts';

const built = existsSync(
  new URL('../../../native-setup/addon/build/Release/distnat_native.node', import.meta.url),
);
const dir = mkdtempSync(join(tmpdir(), 'distnat-notify-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A Python listener on `address` ('@name' or a path): resolves with the first datagram it receives. */
function listener(address: string): { ready: Promise<void>; received: Promise<string> } {
  const code = `
import socket, sys
a = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + a[1:] if a.startswith("@") else a)
print("ready", flush=True)
s.settimeout(20)
sys.stdout.write(s.recv(8192).hex() + "\\n")
`;
  const p = spawn('python3', ['-c', code, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let readyResolve!: () => void;
  const ready = new Promise<void>((r) => (readyResolve = r));
  const received = new Promise<string>((resolve, reject) => {
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('ready\n')) readyResolve();
    });
    p.on('close', (code) => {
      const hex = out.split('\n')[1];
      if (code === 0 && hex !== undefined) resolve(Buffer.from(hex, 'hex').toString());
      else reject(new Error(`listener exited ${code}: ${out}`));
    });
  });
  return { ready, received };
}

describe('sd_notify', () => {
  it('formats fields as KEY=VALUE lines, a newline in a value never starting a field of its own', () => {
    expect(notifyMessage({ READY: 1, STATUS: 'routing' })).toBe('READY=1\nSTATUS=routing');
    expect(notifyMessage({ STATUS: 'a\nREADY=1' })).toBe('STATUS=a READY=1');
  });

  it('does nothing without NOTIFY_SOCKET, and has no watchdog then', () => {
    const send = vi.fn();
    const n = serviceNotifier({ WATCHDOG_USEC: '20000000' }, send);
    expect(n.listening).toBe(false);
    expect(n.notify({ READY: 1 })).toBeUndefined();
    expect(send).not.toHaveBeenCalled();
    expect(n.watchdogIntervalMs).toBeUndefined();
  });

  it('pings the watchdog four times per WatchdogSec, only when it is meant for this process', () => {
    const env = { NOTIFY_SOCKET: '@x', WATCHDOG_USEC: '20000000' };
    expect(serviceNotifier(env, vi.fn(), 42).watchdogIntervalMs).toBe(5000);
    expect(serviceNotifier({ ...env, WATCHDOG_PID: '42' }, vi.fn(), 42).watchdogIntervalMs).toBe(5000);
    expect(serviceNotifier({ ...env, WATCHDOG_PID: '41' }, vi.fn(), 42).watchdogIntervalMs).toBeUndefined();
    expect(serviceNotifier({ NOTIFY_SOCKET: '@x' }, vi.fn(), 42).watchdogIntervalMs).toBeUndefined();
  });

  it('hands a failed send back instead of throwing', () => {
    const n = serviceNotifier({ NOTIFY_SOCKET: '/nonexistent' }, () => {
      throw new Error('ENOENT');
    });
    expect(n.notify({ READY: 1 })?.message).toBe('ENOENT');
  });

  it.skipIf(!built).each([
    ['an abstract name', `@distnat-notify-test-${process.pid}`],
    ['a path', join(dir, 'notify.sock')],
  ])('reaches a listener at %s through the native addon', async (_what, address) => {
    const { ready, received } = listener(address);
    await ready;
    const n = serviceNotifier({ NOTIFY_SOCKET: address });
    expect(n.listening).toBe(true);
    expect(n.notify({ READY: 1, STATUS: 'routing 198.51.100.30' })).toBeUndefined();
    expect(await received).toBe('READY=1\nSTATUS=routing 198.51.100.30');
  });

  it.skipIf(!built)('reports the errno when nothing listens', () => {
    const gone = serviceNotifier({ NOTIFY_SOCKET: join(dir, 'nobody.sock') }).notify({ READY: 1 });
    expect((gone as NodeJS.ErrnoException | undefined)?.code).toBe('ENOENT');
    const abstract = serviceNotifier({ NOTIFY_SOCKET: `@distnat-nobody-${process.pid}` }).notify({
      READY: 1,
    });
    expect((abstract as NodeJS.ErrnoException | undefined)?.code).toBe('ECONNREFUSED');
  });

  it.skipIf(!built)('refuses an address that is neither a path nor an abstract name', () => {
    const err = serviceNotifier({ NOTIFY_SOCKET: 'relative.sock' }).notify({ READY: 1 });
    expect(err).toBeInstanceOf(RangeError);
  });
});
