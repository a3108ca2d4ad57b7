import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import yargs from 'yargs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caCommand } from '../../../src/cli/commands/ca.ts';
import { COMMANDS } from '../../../src/cli/commands/index.ts';
import { ExitCode, UserError } from '../../../src/util/exit-codes.ts';
import { openssl } from './helpers.ts';

const BIN = resolve(import.meta.dirname, '../../../bin/distnat');
let dir: string;

/** The real binary: slow to start (about 2 s), so only for what needs the whole command line. */
function spawned(...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(BIN, args, { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/**
 * The ca command in this process, with main.ts's rules: a UserError prints
 * "distnat: <message>" and yields its exit code. Paths are taken relative to
 * the test directory.
 */
async function distnat(...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const cwd = process.cwd();
  let stdout = '';
  let stderr = '';
  const write = { out: process.stdout.write, err: process.stderr.write, log: console.log };
  // yargs prints --help with console.log.
  console.log = (...a: unknown[]) => void (stdout += a.join(' ') + '\n');
  process.stdout.write = ((c: string | Uint8Array) => (
    (stdout += String(c)),
    true
  )) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array) => (
    (stderr += String(c)),
    true
  )) as typeof process.stderr.write;
  process.chdir(dir);
  let status = 0;
  try {
    await caCommand(
      yargs(args)
        .scriptName('distnat')
        .strict()
        .help()
        .exitProcess(false)
        .fail((msg, err) => {
          if (err) throw err;
          throw new UserError(msg, ExitCode.USAGE);
        }),
      COMMANDS.find((c) => c.name === 'ca')!,
    ).parseAsync();
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    stderr += `distnat: ${e.message}\n`;
    status = e.exitCode;
  } finally {
    process.chdir(cwd);
    process.stdout.write = write.out;
    process.stderr.write = write.err;
    console.log = write.log;
  }
  return { status, stdout, stderr };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'distnat-ca-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ROOT_PEM = () => join(dir, 'root/ca.pem');
const LOCAL_PEM = () => join(dir, 'ca/ca.pem');

describe('distnat ca', { timeout: 60_000 }, () => {
  it('init, issue-local, request --csr-only, issue-host: a chain openssl accepts', async () => {
    const init = await distnat('ca', 'init', '--dir', 'root', '--key-type', 'rsa-2048');
    expect(init.stderr).toBe('');
    expect(init.status).toBe(0);
    expect(init.stdout).toContain('Root CA "O=distnat, CN=distnat root CA"');
    expect(statSync(join(dir, 'root', 'ca.key')).mode & 0o777).toBe(0o600);

    const local = await distnat(
      'ca',
      'issue-local',
      '--shared-address',
      '198.51.100.30',
      '--root',
      'root',
      '--out',
      'ca',
      '--crl-address',
      '203.0.113.1',
    );
    expect(local.status).toBe(0);
    expect(local.stdout).toContain('its certificates name the CRL at http://203.0.113.1:7033/crl');
    expect(local.stdout).toContain('may sign host certificates but no further CA (pathLen 0)');

    const req = await distnat('ca', 'request', '--key', 'h1.key', '--out', 'h1.csr', '--csr-only');
    expect(req.status).toBe(0);
    expect(statSync(join(dir, 'h1.key')).mode & 0o777).toBe(0o600);
    const host = await distnat(
      'ca',
      'issue-host',
      '--ca',
      'ca',
      '--csr',
      'h1.csr',
      '--ports',
      '1026-1057',
      '--spis',
      '256+64',
      '--out',
      'h1.pem',
    );
    expect(host.status).toBe(0);
    expect(host.stderr).toContain('the key below owns 198.51.100.30 ports 1026-1057 and IPsec SPIs 256-319');
    const v = openssl('verify', '-CAfile', ROOT_PEM(), '-untrusted', LOCAL_PEM(), join(dir, 'h1.pem'));
    expect(v.out).toContain('h1.pem: OK');
  });

  it('show says what each kind of file binds', async () => {
    expect((await distnat('ca', 'show', 'h1.pem')).stdout).toMatch(
      /^Host certificate: the key below owns 198\.51\.100\.30 ports 1026-1057/,
    );
    expect((await distnat('ca', 'show', 'h1.csr')).stdout).toContain('signature: good');
    const ca = await distnat('ca', 'show', 'ca');
    expect(ca.stdout).toMatch(
      /issued 1 certificate\(s\):\n {2}[0-9a-f]+ {2}valid .*10\.0\.0\.1: ports 1026-1057, SPIs 256-319/,
    );
  });

  it('revoke writes a CRL that makes openssl refuse the certificate; crl --der writes what is served', async () => {
    const r = await distnat('ca', 'revoke', '--ca', 'ca', '--cert', 'h1.pem', '--reason', 'keyCompromise');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/revoked [0-9a-f]+ \(keyCompromise\)/);
    const v = openssl(
      'verify',
      '-crl_check',
      '-CAfile',
      ROOT_PEM(),
      '-untrusted',
      LOCAL_PEM(),
      '-CRLfile',
      join(dir, 'ca/crl.pem'),
      join(dir, 'h1.pem'),
    );
    expect(v.out).toContain('certificate revoked');
    expect((await distnat('ca', 'revoke', '--ca', 'ca', '--cert', 'h1.pem')).stdout).toContain(
      'was already revoked',
    );

    expect(
      (await distnat('ca', 'crl', '--ca', 'ca', '--out', 'ca.crl', '--der', '--lifetime', '60')).status,
    ).toBe(0);
    const text = openssl('crl', '-inform', 'DER', '-in', join(dir, 'ca.crl'), '-noout', '-text').out;
    expect(text).toContain('Key Compromise');
    expect(text).toMatch(/CRL Number: \s+3\n/);
    expect((await distnat('ca', 'show', 'ca.crl')).stdout).toMatch(
      /CRL number 3 .*\n.*\n {2}revokes 1 certificate/,
    );
  });

  it('errors are one line with a sysexits code', async () => {
    // Through the real binary once: the command is registered and main.ts prints and maps the error.
    const again = spawned('ca', 'init', '--dir', 'root');
    expect(again.status).toBe(73);
    expect(again.stderr).toBe(
      'distnat: root already holds a CA key; choose another directory or remove it first\n',
    );
    const missing = await distnat(
      'ca',
      'issue-local',
      '--shared-address',
      '198.51.100.30',
      '--root',
      'nowhere',
      '--out',
      'x',
      '--crl-address',
      '203.0.113.1',
    );
    expect(missing.status).toBe(64);
    const notRoot = await distnat(
      'ca',
      'issue-local',
      '--shared-address',
      '198.51.100.30',
      '--root',
      'ca',
      '--out',
      'x',
      '--crl-address',
      '203.0.113.1',
    );
    expect([notRoot.status, notRoot.stderr]).toEqual([1, 'distnat: ca is not a root CA\n']);
    expect((await distnat('ca', 'revoke', '--ca', 'ca')).status).toBe(64);
    expect((await distnat('ca', 'revoke', '--ca', 'ca', '--serial', 'abcd')).stderr).toContain(
      'never issued serial abcd',
    );
    expect(
      (await distnat('ca', 'issue-host', '--ca', 'ca', '--csr', 'h1.csr', '--ports', '5-x')).status,
    ).toBe(64);
    expect((await distnat('ca', 'show', 'root/ca.key')).stderr).toContain('holds a PRIVATE KEY');
    const refused = await distnat(
      'ca',
      'request',
      '--key',
      'h1.key',
      '--out',
      'x.pem',
      '--router',
      'http://127.0.0.1:1',
    );
    expect(refused.status).toBe(69);
  });

  it('--help of every subcommand carries an example', async () => {
    expect(spawned('ca', '--help').stdout).toContain('distnat ca issue-local');
    for (const sub of ['init', 'issue-local', 'issue-host', 'request', 'show', 'revoke', 'crl']) {
      const h = await distnat('ca', sub, '--help');
      expect(h.status, sub).toBe(0);
      expect(h.stdout, sub).toMatch(/Examples:\n {2}distnat ca /);
    }
  });
});
