/**
 * `distnat check`: the files a daemon would refuse, all their problems, and
 * the same message the daemon prints; the examples the project ships pass.
 * The in-process cases call checkFiles; the end-to-end ones spawn the built
 * bin/distnat (npm run build) for the exit codes and the exact output.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runDistnat, type CliRun } from '../../helpers/cli.ts';
import { parse as parseYaml, stringify } from 'yaml';
import { checkFile, checkFiles } from '../../../src/cli/commands/check-file.ts';
import { hostConfigFrom } from '../../../src/cli/commands/host.ts';
import { mergeRouterFlags } from '../../../src/cli/commands/router.ts';
import { ConfigError, formatProblem } from '../../../src/config/config-error.ts';
import { readConfigFile, validateConfig } from '../../../src/config/load.ts';
import { RouterConfigSchema } from '../../../src/config/router-config.ts';
import { H1_KEYS, H2_KEYS, hostKeying } from '../../netns/ipsec-keys.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const CONFIG_DIR = join(ROOT, 'native-setup/config');
const dir = mkdtempSync(join(tmpdir(), 'distnat-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const pem = (name: string, label: string): string =>
  file(name, `-----BEGIN ${label}-----\nAAAA\n-----END ${label}-----\n`);

const ROUTER_OK = 'sharedAddress: 198.51.100.30\nlanAddress: 10.0.0.7\n';
const HOST_OK = 'router: 10.0.0.7\nlanAddress: 10.0.0.1\nsharedAddress: 198.51.100.30\n';

/** The YAML blocks of a Markdown page. */
function yamlBlocks(page: string): string[] {
  const text = readFileSync(join(ROOT, page), 'utf8');
  return [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

describe('checkFiles', () => {
  it('reports each file with a one-line summary when it is valid', () => {
    const reports = checkFiles([
      { kind: 'router', file: file('r.yaml', ROUTER_OK) },
      { kind: 'host', file: file('h.yaml', HOST_OK) },
    ]);
    expect(reports.map((r) => [r.ok, r.summary])).toEqual([
      [
        true,
        'router: shared 198.51.100.30, LAN 10.0.0.7, ports 1024-65535 in 2016 blocks of 32, ' +
          'SPIs from 256 in blocks of 64, lease 300 s',
      ],
      [true, 'host: LAN 10.0.0.1 via router 10.0.0.7, shared 198.51.100.30, translate mode, PAP over udp'],
    ]);
  });

  it('follows a host file to the keying files it names, once each, and names who named them', () => {
    const ike = file('named-ike.yaml', 'trust: [nowhere.pem]\n');
    const ipsec = file('named-ipsec.yaml', 'sas: [{ spi: 1 }]\n');
    const h1 = file('h-ike.yaml', `${HOST_OK}ike: ${ike}\n`);
    const h2 = file('h-ipsec.yaml', `${HOST_OK}ipsec: ${ipsec}\n`);
    const reports = checkFiles([
      { kind: 'host', file: h1 },
      { kind: 'host', file: h2 },
      { kind: 'ike', file: ike },
    ]);
    expect(reports.map((r) => [r.file, r.kind, r.namedBy, r.ok])).toEqual([
      [h1, 'host', undefined, true],
      [h2, 'host', undefined, true],
      [ike, 'ike', undefined, false],
      [ipsec, 'ipsec', h2, false],
    ]);
    expect(reports[2]!.problems.map(formatProblem)).toEqual([
      expect.stringMatching(
        /^field `trust.0`: got "nowhere.pem"; expected a readable file of PEM certificates/,
      ),
    ]);
    expect(reports[3]!.problems.map((p) => p.field)).toEqual([
      'sas.0.spi',
      'sas.0.direction',
      'sas.0.protocol',
    ]);
  });

  it('lets a host file leave the shared address to the TUN device, and says so', () => {
    const [r] = checkFiles([
      { kind: 'host', file: file('h-tun.yaml', 'router: 10.0.0.7\nlanAddress: 10.0.0.1\ntun: dn1\n') },
    ]);
    expect(r).toMatchObject({
      ok: true,
      summary: 'host: LAN 10.0.0.1 via router 10.0.0.7, shared from dn1, translate mode, PAP over udp',
      notes: ['sharedAddress not given: `distnat host` takes the address of the TUN device dn1 at start'],
    });
    const [bad] = checkFiles([
      { kind: 'host', file: file('h-tun-bad.yaml', 'router: 10.0.0.7\nlanAddress: 10.0.0.7\n') },
    ]);
    expect(bad!.ok).toBe(false);
    expect(bad!.problems.map((p) => p.field)).toEqual(['lanAddress']);
  });

  it('checks each host file against the router file given with it', () => {
    const router = file('pair-router.yaml', `${ROUTER_OK}pap: { udpPort: 7100 }\n`);
    const good = file('pair-good.yaml', `${HOST_OK}pap: { udpPort: 7100 }\n`);
    const port = file('pair-port.yaml', HOST_OK);
    const other = file('pair-other.yaml', HOST_OK.replace('router: 10.0.0.7', 'router: 10.0.0.9'));
    const reports = checkFiles([
      { kind: 'host', file: good },
      { kind: 'host', file: port },
      { kind: 'host', file: other },
      { kind: 'router', file: router },
    ]);
    expect(reports.map((r) => [r.file, r.ok, r.problems.map(formatProblem)])).toEqual([
      [good, true, []],
      [
        port,
        false,
        [`field \`pap.udpPort\`: got 7032 (the default); expected the router's pap.udpPort 7100 (${router})`],
      ],
      [
        other,
        false,
        [
          `field \`router\`: got "10.0.0.9"; expected the lanAddress of a router checked with it (10.0.0.7 in ${router})`,
        ],
      ],
      [router, true, []],
    ]);
  });

  it('a file that cannot be read or parsed is a report, not an exception', () => {
    const missing = join(dir, 'missing.yaml');
    expect(checkFile('router', missing).report).toMatchObject({
      ok: false,
      problems: [{ expected: expect.stringMatching(/^cannot read the file: ENOENT/) }],
    });
    expect(checkFile('ike', file('syntax.yaml', 'trust: [a\n')).report.ok).toBe(false);
  });
});

/** Files each rule refuses, as a person would write them. */
const REFUSED: readonly (readonly ['router' | 'host', string, string])[] = [
  ['router', 'shared address as LAN address', 'sharedAddress: 198.51.100.30\nlanAddress: 198.51.100.30\n'],
  ['router', 'block size not dividing the range', `${ROUTER_OK}pap: { blockSize: 30 }\n`],
  ['router', 'quota below a block', `${ROUTER_OK}pap: { maxPortsPerHost: 8 }\n`],
  ['router', 'SPIs past 32 bits', `${ROUTER_OK}pap: { spiFirst: 4294967295 }\n`],
  ['router', 'well-known ports', `${ROUTER_OK}pap: { portRange: [1, 65535] }\n`],
  ['router', 'metrics port 99999', `${ROUTER_OK}metrics: 127.0.0.1:99999\n`],
  ['router', 'short lease', `${ROUTER_OK}pap: { leaseSeconds: 5 }\n`],
  ['router', 'CRL on the LAN address', `${ROUTER_OK}pki: { dir: ca, wanAddress: 10.0.0.7 }\n`],
  ['router', 'a typo', `${ROUTER_OK}pap: { blocksize: 16 }\n`],
  ['host', 'LAN address of the router', HOST_OK.replace('lanAddress: 10.0.0.1', 'lanAddress: 10.0.0.7')],
  ['host', 'ipsec and ike', `${HOST_OK}ipsec: a.yaml\nike: b.yaml\n`],
  ['host', 'metrics port 99999', `${HOST_OK}metrics: 127.0.0.1:99999\n`],
  ['host', 'a typo', `${HOST_OK}pap: { transprot: icmp }\n`],
];

describe('the daemons refuse what check refuses, with the same message', () => {
  it.for(REFUSED)('%s: %s', ([kind, name, text]) => {
    const cfg = file(`refused-${kind}-${name.replace(/\W+/g, '-')}.yaml`, text);
    const [report] = checkFiles([{ kind, file: cfg }]);
    expect(report!.ok).toBe(false);
    const start = (): unknown =>
      kind === 'router'
        ? validateConfig(
            RouterConfigSchema,
            mergeRouterFlags(readConfigFile(cfg) as Record<string, unknown>, {}),
            cfg,
          )
        : hostConfigFrom({ config: cfg });
    expect(start).toThrow(ConfigError);
    expect(start).toThrow(new ConfigError(cfg, report!.problems).message);
  });
});

describe('the examples pass', () => {
  it.for(readdirSync(CONFIG_DIR).filter((f) => f.endsWith('.yaml')))(
    'native-setup/config/%s, as shipped',
    (name) => {
      const kind = name.replace('.yaml', '') as 'router' | 'host';
      const [r] = checkFiles([{ kind, file: join(CONFIG_DIR, name) }]);
      expect(r!.problems.map(formatProblem)).toEqual([]);
      expect(r!.ok).toBe(true);
    },
  );

  it('native-setup/config/router.yaml with every setting uncommented', () => {
    const text = readFileSync(join(CONFIG_DIR, 'router.yaml'), 'utf8').replace(
      /^#\s?(\s*[A-Za-z]+:)/gm,
      '$1',
    );
    expect(checkFile('router', file('router-all.yaml', text)).report.problems.map(formatProblem)).toEqual([]);
  });

  it('native-setup/config/host.yaml with every setting uncommented (ike, the alternative to ipsec, left out)', () => {
    const all = parseYaml(
      readFileSync(join(CONFIG_DIR, 'host.yaml'), 'utf8').replace(/^#\s?(\s*[A-Za-z]+:)/gm, '$1'),
    ) as Record<string, unknown>;
    expect(all.ipsec).toBeDefined();
    delete all.ike;
    expect(
      checkFile('host', file('host-all.yaml', stringify(all))).report.problems.map(formatProblem),
    ).toEqual([]);
  });

  it("docs/ipsec.md's manual keying file, and the namespace tests' keying files of h1 and h2", () => {
    const [doc] = yamlBlocks('docs/ipsec.md');
    const files = [doc!, hostKeying(H1_KEYS).yaml, hostKeying(H2_KEYS).yaml].map((t, i) =>
      file(`ipsec-${i}.yaml`, t),
    );
    const reports = checkFiles(files.map((f) => ({ kind: 'ipsec' as const, file: f })));
    expect(reports.flatMap((r) => r.problems.map(formatProblem))).toEqual([]);
    expect(reports.map((r) => r.summary)).toEqual([
      'manual keying: 5 SAs, 4 policies, default bypass',
      expect.stringMatching(/^manual keying: \d+ SAs/),
      expect.stringMatching(/^manual keying: \d+ SAs/),
    ]);
  });

  it("docs/ike.md's host and peer IKE files, once the files they name exist", () => {
    const root = pem('root.pem', 'CERTIFICATE');
    const cert = pem('cert.pem', 'CERTIFICATE');
    const key = pem('key.pem', 'PRIVATE KEY');
    const blocks = yamlBlocks('docs/ike.md');
    expect(blocks).toHaveLength(2);
    const reports = checkFiles(
      blocks.map((b, i) => ({
        kind: 'ike' as const,
        file: file(
          `ike-${i}.yaml`,
          b
            .replace('/etc/distnat/root.pem', root)
            .replace('/etc/distnat/server/cert.pem', cert)
            .replace('/etc/distnat/server/key.pem', key),
        ),
      })),
    );
    expect(reports.flatMap((r) => r.problems.map(formatProblem))).toEqual([]);
    expect(reports.map((r) => r.summary)).toEqual([
      'IKE: 1 trusted root file, 1 peer, certificate from the router (for a host: a peer needs certificate and key)',
      'IKE: 1 trusted root file, 1 peer, own certificate',
    ]);
  });

  it("docs/router.md's pki section", () => {
    const [pki] = yamlBlocks('docs/router.md');
    const r = checkFile('router', file('router-pki.yaml', `${ROUTER_OK}${pki}`)).report;
    expect(r.problems.map(formatProblem)).toEqual([]);
    expect(r.summary).toMatch(/local CA on port 7033$/);
  });
});

const distnat = (args: string[]): Promise<CliRun> => runDistnat(args, dir);

const BAD_ROUTER = [
  'sharedAddress: 198.51.100.30',
  'lanAddress: 198.51.100.30',
  'metrics: 127.0.0.1:99999',
  'pap:',
  '  blocksize: 30',
  '  portRange: [500, 65535]',
  '  maxPortsPerHost: 16',
  '  spiFirst: 4294967290',
  '',
].join('\n');

// Each spawn costs a node start-up; run them side by side.
describe.concurrent('distnat check, spawned', { timeout: 60_000 }, () => {
  it('the shipped examples: 0, one "ok" line each on stdout, nothing on stderr', async () => {
    const router = join(CONFIG_DIR, 'router.yaml');
    const host = join(CONFIG_DIR, 'host.yaml');
    const r = await distnat(['check', '--router', router, '--host', host]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(
      `${router}: ok (router: shared 198.51.100.30, LAN 10.0.0.7, ports 1024-65535 in 2016 blocks of 32, ` +
        'SPIs from 256 in blocks of 64, lease 300 s)\n' +
        `${host}: ok (host: LAN 10.0.0.1 via router 10.0.0.7, shared 198.51.100.30, translate mode, PAP over udp)\n`,
    );
  });

  it('a bad router file: 78, every problem, and exactly what `distnat router` says at start', async () => {
    const cfg = file('router-bad.yaml', BAD_ROUTER);
    const check = await distnat(['check', '--router', cfg]);
    expect(check.code).toBe(78);
    expect(check.stdout).toBe('');
    expect(check.stderr).toBe(
      `${cfg}: invalid configuration\n` +
        '  - field `pap.blocksize`: got 30; unknown field; did you mean blockSize?\n' +
        '  - field `metrics`: got "127.0.0.1:99999"; expected a port of 0-65535 after the colon (0: any free port)\n' +
        '  - field `lanAddress`: got "198.51.100.30"; expected the router\'s own LAN address, not sharedAddress: ' +
        'the shared address is routed to the hosts through the TUN device, the LAN address carries PAP and the tunnels\n' +
        '  - field `pap.portRange`: got [500,65535]; expected ports from 1024 up: 0-1023 are the system ports ' +
        'servers listen on (RFC 6335), never a source port a host should be leased\n' +
        '  - field `pap.blockSize`: got 32 (the default); expected a block size that divides the 65036 ports of ' +
        'pap.portRange [500, 65535] (such as 2, 4, 71), else its last 12 ports are a short block\n' +
        '  - field `pap.maxPortsPerHost`: got 16; expected at least pap.blockSize (32): below one block, no host ' +
        'is ever granted a whole block\n' +
        '  - field `pap.spiFirst`: got 4294967290; expected at most 4294967232: SPIs are 32 bits, and a block of ' +
        'pap.spiBlockSize (64) from here would run past 4294967295\n',
    );
    const daemon = await distnat(['router', '--config', cfg]);
    expect(daemon.code).toBe(78);
    expect(daemon.stderr).toBe(`distnat: ${check.stderr}`);
  });

  it('a bad host file: 78, and exactly what `distnat host` says at start', async () => {
    const cfg = file(
      'host-bad.yaml',
      'router: 10.0.0.7\nlanAddress: 10.0.0.7\nsharedAddress: 198.51.100.30\nmetrics: h:x\n',
    );
    const check = await distnat(['check', '--host', cfg]);
    expect(check.code).toBe(78);
    expect(check.stderr).toBe(
      `${cfg}: invalid configuration\n` +
        '  - field `metrics`: got "h:x"; expected host:port, for example 127.0.0.1:9732\n' +
        '  - field `lanAddress`: got "10.0.0.7"; expected this host\'s own LAN address, not the router\'s: ' +
        'it is the outer source of the tunnel\n',
    );
    const daemon = await distnat(['host', '--config', cfg]);
    expect(daemon.code).toBe(78);
    expect(daemon.stderr).toBe(`distnat: ${check.stderr}`);
  });

  it("a host's IKE file with a missing trust file: refused by check and by `distnat host` before it opens anything", async () => {
    const ike = file('host-ike-bad.yaml', 'trust: [/nonexistent/root.pem]\n');
    const cfg = file('host-with-ike.yaml', `${HOST_OK}ike: ${ike}\n`);
    const problem =
      '  - field `trust.0`: got "/nonexistent/root.pem"; expected a readable file of PEM certificates ' +
      "(-----BEGIN CERTIFICATE-----): ENOENT: no such file or directory, open '/nonexistent/root.pem'\n";
    const check = await distnat(['check', '--host', cfg]);
    expect(check.code).toBe(78);
    expect(check.stdout).toMatch(/host-with-ike.yaml: ok \(host: .*, IKE\)\n$/);
    expect(check.stderr).toBe(`${ike} (named by ${cfg}): invalid configuration\n${problem}`);
    // Had the agent started (it reads the IKE file again once its devices are open), it would have logged so.
    const run = join(dir, 'host-ike-run');
    const daemon = await distnat([
      'host',
      '--config',
      cfg,
      '--tun',
      'dxchk0',
      '--run-dir',
      run,
      '--state-dir',
      run,
    ]);
    expect(daemon.code).toBe(78);
    expect(daemon.stdout).toBe('');
    expect(daemon.stderr).toBe(`distnat: ${ike}: invalid configuration\n${problem}`);
  });

  it('--json: the same results for a script, exit 78 when any file is bad', async () => {
    const good = file('json-ok.yaml', ROUTER_OK);
    const bad = file('json-bad.yaml', `${ROUTER_OK}pap: { leaseSeconds: 5 }\n`);
    const r = await distnat(['check', '--json', '--router', good, '--router', bad]);
    expect(r.code).toBe(78);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { ok: boolean; files: Record<string, unknown>[] };
    expect(out.ok).toBe(false);
    expect(out.files).toEqual([
      expect.objectContaining({ file: good, kind: 'router', ok: true, problems: [] }),
      expect.objectContaining({
        file: bad,
        kind: 'router',
        ok: false,
        problems: [
          {
            field: 'pap.leaseSeconds',
            value: 5,
            expected: expect.stringMatching(/^expected at least 9 s/),
            message: expect.stringMatching(/^field `pap.leaseSeconds`: got 5; expected at least 9 s/),
          },
        ],
      }),
    ]);
  });

  it('no file named: 64', async () => {
    const r = await distnat(['check']);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(
      "distnat: name a file: --router, --host, --ipsec or --ike\nTry 'distnat check --help' for more information.\n",
    );
  });
});
