/**
 * `distnat check` reads files and does nothing else: with every way of
 * writing a file, binding or connecting a socket and running a program
 * refused in this process, it checks router, host, manual keying and IKE
 * files (a host whose IKE key does not exist yet included: the agent makes
 * one at start, check must not) and reports what it always reports.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

const touched = vi.hoisted(() => [] as string[]);

function refuse(what: string) {
  return (...args: unknown[]): never => {
    touched.push(`${what} ${String(args[0])}`);
    throw new Error(`check must not ${what}`);
  };
}

vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const readOnly = (flags: unknown): boolean =>
    flags === undefined || flags === 'r' || flags === fs.constants.O_RDONLY;
  const guarded = {
    writeFileSync: refuse('writeFileSync'),
    appendFileSync: refuse('appendFileSync'),
    mkdirSync: refuse('mkdirSync'),
    rmSync: refuse('rmSync'),
    unlinkSync: refuse('unlinkSync'),
    renameSync: refuse('renameSync'),
    chmodSync: refuse('chmodSync'),
    writeFile: refuse('writeFile'),
    mkdir: refuse('mkdir'),
    createWriteStream: refuse('createWriteStream'),
    openSync: (path: string, flags?: unknown, mode?: number) =>
      readOnly(flags) ? fs.openSync(path, flags as string, mode) : refuse('openSync for writing')(path),
  };
  return { ...fs, ...guarded, default: { ...fs, ...guarded } };
});
vi.mock('node:net', async (importOriginal) => {
  const net = await importOriginal<typeof import('node:net')>();
  const guarded = {
    createServer: refuse('net.createServer'),
    connect: refuse('net.connect'),
    createConnection: refuse('net.createConnection'),
  };
  return { ...net, ...guarded, default: { ...net, ...guarded } };
});
vi.mock('node:dgram', async (importOriginal) => {
  const dgram = await importOriginal<typeof import('node:dgram')>();
  const guarded = { createSocket: refuse('dgram.createSocket') };
  return { ...dgram, ...guarded, default: { ...dgram, ...guarded } };
});
vi.mock('node:child_process', async (importOriginal) => {
  const cp = await importOriginal<typeof import('node:child_process')>();
  const guarded = {
    execFileSync: refuse('execFileSync'),
    execFile: refuse('execFile'),
    spawn: refuse('spawn'),
    spawnSync: refuse('spawnSync'),
    exec: refuse('exec'),
    execSync: refuse('execSync'),
  };
  return { ...cp, ...guarded, default: { ...cp, ...guarded } };
});

const fs = await vi.importActual<typeof import('node:fs')>('node:fs');
const os = await vi.importActual<typeof import('node:os')>('node:os');
const { checkFiles } = await import('../../../src/cli/commands/check-file.ts');

const dir = fs.mkdtempSync(join(os.tmpdir(), 'distnat-check-ro-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string): string => {
  fs.writeFileSync(join(dir, name), text);
  return join(dir, name);
};

describe('distnat check touches nothing', () => {
  it('reads every kind of file, good and bad, and writes, binds, connects and runs nothing', () => {
    const root = file('root.pem', '-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n');
    const key = join(dir, 'state', 'ike-key.pem');
    const ike = file(
      'ike.yaml',
      `trust: [${root}]\nkey: ${key}\npeers: [{ address: 203.0.113.3, initiate: true }]\n`,
    );
    const ipsec = file('ipsec.yaml', 'sas: []\npolicies: []\n');
    const reports = checkFiles([
      {
        kind: 'router',
        file: file(
          'router.yaml',
          'sharedAddress: 198.51.100.30\nlanAddress: 10.0.0.7\nmetrics: 127.0.0.1:9732\npki: { dir: /nonexistent/ca }\n',
        ),
      },
      { kind: 'router', file: file('bad.yaml', 'sharedAddress: 198.51.100.30\nlanAddress: 198.51.100.30\n') },
      { kind: 'host', file: file('host.yaml', `router: 10.0.0.7\nlanAddress: 10.0.0.1\nike: ${ike}\n`) },
      { kind: 'ipsec', file: ipsec },
      { kind: 'ike', file: join(dir, 'missing.yaml') },
    ]);
    expect(touched).toEqual([]);
    expect(reports.map((r) => [r.kind, r.ok])).toEqual([
      ['router', true],
      ['router', false],
      ['host', true],
      ['ipsec', true],
      ['ike', false],
      ['ike', true],
    ]);
    expect(fs.existsSync(key)).toBe(false);
  });

  it('the guards are in force (a check that could not see a write would prove nothing)', async () => {
    touched.length = 0;
    const mocked = await import('node:fs');
    expect(() => mocked.writeFileSync(join(dir, 'x'), 'x')).toThrow(/must not writeFileSync/);
    expect(touched).toEqual([`writeFileSync ${join(dir, 'x')}`]);
    touched.length = 0;
  });
});
