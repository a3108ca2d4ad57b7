/**
 * The real `bin/distnat`, spawned as an operator would run it: for each
 * subcommand the exact message a person sees on a bad start and the sysexits
 * code, and `--help` with an example. Nothing here needs root or a network;
 * the privilege, port and daemon cases are in test/netns/cli-*.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runDistnat, type CliRun } from '../../helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'distnat-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const distnat = (args: string[]): Promise<CliRun> => runDistnat(args, dir);

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

// Each spawn costs a Node start-up; run them side by side.
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

  it('router: a bad value from a flag that overrides the file is a usage error naming the flag (64)', async () => {
    const cfg = file('router-ok.yaml', 'sharedAddress: 198.51.100.30\nlanAddress: 10.0.0.7\n');
    const r = await distnat(['router', '--config', cfg, '--lan-address', '10.0.0.999']);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(
      'distnat: --lan-address: got "10.0.0.999"; expected an IPv4 address such as 10.0.0.7\n' +
        "Try 'distnat router --help' for more information.\n",
    );
  });

  it('router: a bad flag and a bad file field are both reported, as a usage error (64)', async () => {
    const cfg = file(
      'router-both.yaml',
      'sharedAddress: 198.51.100.30\nlanAddress: 10.0.0.7\npap: { blockSize: 0 }\n',
    );
    const r = await distnat(['router', '--config', cfg, '--ca-dir', 'ca', '--ca-port', '70000']);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(
      'distnat: --ca-port: got 70000; Too big: expected number to be <=65535\n' +
        `${cfg}: invalid configuration\n` +
        '  - field `pap.blockSize`: got 0; Too small: expected number to be >=1\n' +
        "Try 'distnat router --help' for more information.\n",
    );
  });

  it.for([
    [['router', '--ca-port', 'abc'], '--ca-port', 'distnat router'],
    [['host', '--block-size', 'many'], '--block-size', 'distnat host'],
    [['ca', 'init', '--dir', 'r', '--days', 'ten'], '--days', 'distnat ca init'],
    [['peer', '--wan-if', 'lo', '--mirror', 'm.yaml', '--mtu', 'big'], '--mtu', 'distnat peer'],
  ] as const)('%j: a number flag given a word is named (64)', async ([args, flag, command]) => {
    const r = await distnat([...args]);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(
      `distnat: ${flag}: expected a number\nTry '${command} --help' for more information.\n`,
    );
  });

  it('host: a bad value from a flag names the flag, not the field (64)', async () => {
    const r = await distnat([
      'host',
      '--router',
      '10.0.0.7',
      '--lan-address',
      '10.0.0.1',
      '--shared-address',
      '198.51.100.30',
      '--block-size',
      '0',
    ]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(
      /^distnat: --block-size: got 0; .*\nTry 'distnat host --help' for more information\.\n$/,
    );
  });

  it('withdraw: a host that is not an IPv4 address is a usage error (64)', async () => {
    const r = await distnat(['withdraw', 'h1']);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(
      'distnat: <host>: got "h1"; expected an IPv4 address such as 198.51.100.30\n' +
        "Try 'distnat withdraw --help' for more information.\n",
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
        "  - field `router`: got nothing; expected the router's LAN address (or give --router, or routers)\n" +
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
    expect(r.stderr).toBe(
      'distnat: Invalid values:\n  Argument: role, Given: "gateway", Choices: "router", "host", "peer"\n' +
        "Try 'distnat status --help' for more information.\n",
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

  // A usage error is two lines: what is wrong, and which help to read. Never the help itself.
  const hint = (command: string) => `Try '${command} --help' for more information.\n`;

  it('ca init without --dir: the missing flag and the hint (64)', async () => {
    const r = await distnat(['ca', 'init']);
    expect(r.code).toBe(64);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`distnat: Missing required argument: dir\n${hint('distnat ca init')}`);
  });

  it('peer: no keying at all, both manual kinds, or --remote without --via, is a usage error (64)', async () => {
    const r = await distnat(['peer', '--wan-if', 'lo']);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(`distnat: give --ike, --ipsec or --mirror\n${hint('distnat peer')}`);
    const both = await distnat(['peer', '--wan-if', 'lo', '--ipsec', 'a.yaml', '--mirror', 'b.yaml']);
    expect(both.code).toBe(64);
    expect(both.stderr).toBe(`distnat: give --ipsec or --mirror, not both\n${hint('distnat peer')}`);
    const v = await distnat(['peer', '--wan-if', 'lo', '--mirror', 'h1.yaml', '--remote', '198.51.100.30']);
    expect(v.code).toBe(64);
    expect(v.stderr).toBe(`distnat: --remote and --via go together\n${hint('distnat peer')}`);
  });

  it('an unknown command: 64, its name and the hint', async () => {
    const r = await distnat(['frobnicate']);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(`distnat: Unknown argument: frobnicate\n${hint('distnat')}`);
  });

  it('a misspelt command: 64, what was not understood and the closest command', async () => {
    const r = await distnat(['stauts']);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(`distnat: Unknown command: stauts. Did you mean status?\n${hint('distnat')}`);
  });

  it('no command at all: 64 and the commands there are', async () => {
    const r = await distnat([]);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(
      `distnat: Name a command: status, router, host, check, ca, peer, withdraw.\n${hint('distnat')}`,
    );
  });

  it.for([
    [['router'], 'distnat router'],
    [['host'], 'distnat host'],
    [['peer'], 'distnat peer'],
    [['ca', 'init'], 'distnat ca init'],
    [['status'], 'distnat status'],
  ] as const)('an unknown flag on %s: 64, the flag and the hint', async ([cmd, command]) => {
    const required =
      cmd[0] === 'peer' ? ['--wan-if', 'lo', '--mirror', 'h1.yaml'] : cmd[0] === 'ca' ? ['--dir', 'x'] : [];
    const r = await distnat([...cmd, ...required, '--frob', '1']);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(`distnat: Unknown argument: frob\n${hint(command)}`);
  });

  it('--version: the package version and the commit it was built from', async () => {
    const r = await distnat(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^distnat \d+\.\d+\.\d+( \(commit [0-9a-f]{12}(, modified)?\))?\n$/);
  });

  it('completion: a bash script, and the words it asks distnat for', async () => {
    const script = await distnat(['completion']);
    expect(script.code).toBe(0);
    expect(script.stdout).toContain(
      'complete -o bashdefault -o default -F _distnat_yargs_completions distnat',
    );
    const commands = await distnat(['--get-yargs-completions', 'distnat', '']);
    expect(commands.stdout.split('\n')).toEqual(
      expect.arrayContaining(['status', 'router', 'ca', 'withdraw']),
    );
    const flags = await distnat(['--get-yargs-completions', 'distnat', 'router', '--']);
    expect(flags.stdout.split('\n')).toEqual(expect.arrayContaining(['--config', '--crl-address']));
    const choices = await distnat(['--get-yargs-completions', 'distnat', 'status', '']);
    expect(choices.stdout.split('\n')).toEqual(expect.arrayContaining(['router', 'host', 'peer']));
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
