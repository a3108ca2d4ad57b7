/**
 * The real `bin/distnat`, spawned as an operator would run it: for each
 * subcommand the exact message a person sees on a bad start and the sysexits
 * code, and `--help` with an example. Nothing here needs root or a network;
 * the privilege, port and daemon cases are in test/netns/cli-*.test.ts.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const DISTNAT = resolve(import.meta.dirname, '../../../bin/distnat');
const dir = mkdtempSync(join(tmpdir(), 'distnat-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function distnat(args: string[]): Promise<Run> {
  return new Promise((done, reject) => {
    const p = spawn(DISTNAT, args, { cwd: dir, env: { ...process.env, COLUMNS: '100' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

// Each spawn costs node + tsx start-up (~1-2 s); run them side by side.
describe.concurrent('distnat command line', { timeout: 60_000 }, () => {
  it('router: a bad field is named with its path, the value and what was expected (78)', async () => {
    const cfg = file(
      'router-bad.yaml',
      'sharedAddress: 198.51.100.300\nlanAddress: 10.0.0.7\npap: { blockSize: 0 }\n',
    );
    const r = await distnat(['router', '--config', cfg]);
    expect(r.code).toBe(78);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `distnat: ${cfg}: invalid configuration\n` +
        '  - field `sharedAddress`: got "198.51.100.300"; expected an IPv4 address such as 10.0.0.7\n' +
        '  - field `pap.blockSize`: got 0; Too small: expected number to be >=1\n',
    );
  });

  it('router: a flag that overrides the file is said to have done so', async () => {
    const cfg = file('router-ok.yaml', 'sharedAddress: 198.51.100.30\nlanAddress: 10.0.0.7\n');
    const r = await distnat(['router', '--config', cfg, '--lan-address', '10.0.0.999']);
    expect(r.code).toBe(78);
    expect(r.stderr).toBe(
      `distnat: ${cfg} (with command-line overrides): invalid configuration\n` +
        '  - field `lanAddress`: got "10.0.0.999"; expected an IPv4 address such as 10.0.0.7\n',
    );
  });

  it('router: a typo in a field name is named, and the field it hides is missing (78)', async () => {
    const cfg = file('router-typo.yaml', 'sharedAddress: 198.51.100.30\nlanAdress: 10.0.0.7\n');
    const r = await distnat(['router', '--config', cfg]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/field `lanAddress`: got nothing/);
    expect(r.stderr).toMatch(/lanAdress/);
  });

  it('router and host: a configuration file that does not exist is named (78)', async () => {
    const missing = join(dir, 'nowhere.yaml');
    for (const role of ['router', 'host']) {
      const r = await distnat([role, '--config', missing]);
      expect(r.code).toBe(78);
      expect(r.stderr).toBe(
        `distnat: ${missing}: invalid configuration\n` +
          `  - cannot read the file: ENOENT: no such file or directory, open '${missing}'\n`,
      );
    }
  });

  it('router: YAML that does not parse names the line (78)', async () => {
    const cfg = file('router-syntax.yaml', 'sharedAddress: 198.51.100.30\n  lanAddress: [10.0.0.7\n');
    const r = await distnat(['router', '--config', cfg]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(
      new RegExp(`^distnat: ${cfg}: invalid configuration\n  - .* at line 1, column 16:\n`),
    );
  });

  it('host: a bad field in its file is named with the value and the expectation (78)', async () => {
    const cfg = file(
      'host-bad.yaml',
      'router: 10.0.0.7\nlanAddress: 10.0.0.1\nsharedAddress: 198.51.100.30\nmode: nat\n',
    );
    const r = await distnat(['host', '--config', cfg]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(new RegExp(`^distnat: ${cfg}: invalid configuration\n`));
    expect(r.stderr).toMatch(/ {2}- field `mode`: got "nat"; .*"translate".*"native"/);
  });

  it('host: without router and addresses says which flag gives each (78)', async () => {
    const r = await distnat(['host', '--tun', 'dxc-none0']);
    expect(r.code).toBe(78);
    expect(r.stderr).toBe(
      'distnat: the command line: invalid configuration\n' +
        "  - field `router`: got nothing; expected the router's LAN address (or give --router)\n" +
        "  - field `lanAddress`: got nothing; expected this host's LAN address (or give --lan-address, or --lan-if " +
        'with the LAN interface)\n' +
        '  - field `sharedAddress`: got nothing; expected the shared address (or give --shared-address, or run ' +
        'native-setup/linux/host-setup.sh up so that the TUN device carries it)\n',
    );
  });

  it('status with no daemon running: 69 and what to start', async () => {
    const run = join(dir, 'run-empty');
    for (const role of ['router', 'host']) {
      const r = await distnat(['status', role, '--run-dir', run]);
      expect(r.code).toBe(69);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        `distnat: cannot reach a running ${role} at ${run}/${role}.sock: connect ENOENT ${run}/${role}.sock\n` +
          `Is \`distnat ${role}\` running with --run-dir ${run}?\n`,
      );
    }
  });

  it('status: an unknown role is a usage error with the choices (64)', async () => {
    const r = await distnat(['status', 'gateway']);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(
      /Invalid values:\n {2}Argument: role, Given: "gateway", Choices: "router", "host", "peer"/,
    );
  });

  it('ca init: creates a root and refuses to overwrite it (0, then 73)', async () => {
    const root = join(dir, 'root');
    const first = await distnat(['ca', 'init', '--dir', root]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(
      new RegExp(
        `^root CA created in ${root} \\(key ${root}/ca.key, mode 0600\\)\nRoot CA "O=distnat, CN=distnat root CA"`,
      ),
    );
    expect(readFileSync(join(root, 'ca.pem'), 'utf8')).toMatch(/^-----BEGIN CERTIFICATE-----/);
    const again = await distnat(['ca', 'init', '--dir', root]);
    expect(again.code).toBe(73);
    expect(again.stderr).toBe(
      `distnat: ${root} already holds a CA key; choose another directory or remove it first\n`,
    );
  });

  it('ca init without --dir: usage error with the help (64)', async () => {
    const r = await distnat(['ca', 'init']);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/^distnat ca init\n/);
    expect(r.stderr).toMatch(/\ndistnat: Missing required argument: dir\n$/);
  });

  it('peer: no keying at all, both manual kinds, or --remote without --via, is a usage error (64)', async () => {
    const r = await distnat(['peer', '--wan-if', 'lo']);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/^distnat peer\n/);
    expect(r.stderr).toMatch(/\ndistnat: give --ike, --ipsec or --mirror\n$/);
    const both = await distnat(['peer', '--wan-if', 'lo', '--ipsec', 'a.yaml', '--mirror', 'b.yaml']);
    expect(both.code).toBe(64);
    expect(both.stderr).toMatch(/\ndistnat: give --ipsec or --mirror, not both\n$/);
    const v = await distnat(['peer', '--wan-if', 'lo', '--mirror', 'h1.yaml', '--remote', '198.51.100.30']);
    expect(v.code).toBe(64);
    expect(v.stderr).toMatch(/\ndistnat: --remote and --via go together\n$/);
  });

  it('an unknown command: 64, the help and the name', async () => {
    const r = await distnat(['frobnicate']);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/^distnat <command> \[options\]\n/);
    expect(r.stderr).toMatch(/Commands:\n/);
    expect(r.stderr).toMatch(/\ndistnat: Unknown argument: frobnicate\n$/);
  });

  it('no command at all: 64 and how to get help', async () => {
    const r = await distnat([]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/\ndistnat: Name a command; `distnat <command> --help` explains each.\n$/);
  });

  it.for([
    [['router'], /^distnat router\n/],
    [['host'], /^distnat host\n/],
    [['peer'], /^distnat peer\n/],
    [['ca', 'init'], /^distnat ca init\n/],
    [['status'], /^distnat status \[role\]\n/],
  ] as const)('an unknown flag on %s: 64 with its help', async ([cmd, usage]) => {
    const required =
      cmd[0] === 'peer' ? ['--wan-if', 'lo', '--mirror', 'h1.yaml'] : cmd[0] === 'ca' ? ['--dir', 'x'] : [];
    const r = await distnat([...cmd, ...required, '--frob', '1']);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(usage);
    expect(r.stderr).toMatch(/\ndistnat: Unknown arguments?: frob\n$/);
  });

  it.for([
    [['router'], 'distnat router --config /etc/distnat/router.yaml'],
    [['host'], 'distnat host --router 10.0.0.7 --lan-if lan0'],
    [['peer'], 'distnat peer --mirror h1-ipsec.yaml --wan-if wan0'],
    [['ca', 'init'], 'distnat ca init --dir /etc/distnat/root'],
    [['status'], 'distnat status router'],
    [[], 'distnat'],
  ] as const)('--help on %s: 0, on stdout, with an example line', async ([cmd, example]) => {
    const r = await distnat([...cmd, '--help']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    if (cmd.length > 0) expect(r.stdout).toMatch(/\nExamples:\n/);
    expect(r.stdout).toContain(example);
  });
});
