/**
 * RSASSA-PSS signatures (RFC 7427) with strongSwan's charon, RSA
 * certificates at both ends:
 *
 *   dxp-ours  198.51.100.30, our daemon (test/unit/ike/ns-agent.ts) on UDP 1030, rsaPss on
 *   dxp-swan  203.0.113.3, charon with rsa_pss = yes (kernel-libipsec)
 *
 * Both directions of initiation: charon logs that our AUTH verified as
 * RSA_EMSA_PSS (salt 32: as long as SHA-256), and ours reports charon's as RSA-PSS. The control: with
 * rsaPss off we sign PKCS #1 v1.5, and charon says so.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HAVE_CHARON, startCharon, type Charon } from '../helpers/charon.ts';
import { Agent } from '../helpers/ike-agent.ts';
import { makePki, type TestPki } from '../unit/ike/pki-fixture.ts';

const NS_OURS = 'dxp-ours';
const NS_SWAN = 'dxp-swan';
const OURS = '198.51.100.30';
const SWAN = '203.0.113.3';

function run(cmd: string, ...args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}${r.stdout}`);
}
const quiet = (cmd: string, ...args: string[]): void => void spawnSync(cmd, args);

let dir: string;
let pki: TestPki;
let swan: Charon | undefined;
const agents: Agent[] = [];

async function startAgent(name: string, extra: Record<string, unknown>): Promise<Agent> {
  const path = join(dir, `${name}.json`);
  writeFileSync(
    path,
    JSON.stringify({
      address: OURS,
      port: 1030,
      certPem: pki.host.certPem,
      chainPem: pki.host.chainPem,
      keyPem: pki.host.keyPem,
      rootPem: pki.rootPem,
      inner: { local: '10.99.0.1', remote: '10.99.0.2' },
      ...extra,
    }),
  );
  const a = new Agent(NS_OURS, path);
  agents.push(a);
  await a.wait('ready', 30_000);
  return a;
}

async function until(cond: () => boolean, ms = 15_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(!HAVE_CHARON)('RSASSA-PSS AUTH with charon (rsa_pss = yes)', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dxp-'));
    pki = await makePki('rsa-2048');
    for (const ns of [NS_OURS, NS_SWAN]) {
      quiet('ip', 'netns', 'del', ns);
      run('ip', 'netns', 'add', ns);
      run('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    }
    run(
      'ip',
      'link',
      'add',
      'dxp-o',
      'netns',
      NS_OURS,
      'type',
      'veth',
      'peer',
      'name',
      'dxp-s',
      'netns',
      NS_SWAN,
    );
    run('ip', '-n', NS_OURS, 'addr', 'add', `${OURS}/32`, 'dev', 'dxp-o');
    run('ip', '-n', NS_SWAN, 'addr', 'add', `${SWAN}/32`, 'dev', 'dxp-s');
    run('ip', '-n', NS_SWAN, 'addr', 'add', '10.99.0.2/32', 'dev', 'lo');
    run('ip', '-n', NS_OURS, 'link', 'set', 'dxp-o', 'up');
    run('ip', '-n', NS_SWAN, 'link', 'set', 'dxp-s', 'up');
    run('ip', '-n', NS_OURS, 'route', 'add', `${SWAN}/32`, 'dev', 'dxp-o');
    run('ip', '-n', NS_SWAN, 'route', 'add', `${OURS}/32`, 'dev', 'dxp-s');
    swan = await startCharon(NS_SWAN, {
      dir: join(dir, 'swan'),
      ikeLogLevel: 1,
      charonSettings: '  rsa_pss = yes\n',
    });
    swan.writeCredential('x509', 'peer.pem', pki.peer.certPem);
    swan.writeCredential('private', 'peer.key', pki.peer.keyPem);
    swan.writeCredential('x509ca', 'root.pem', pki.rootPem);
    swan.writeSwanctlConf(`connections {
  dxp {
    version = 2
    local_addrs = ${SWAN}
    remote_addrs = ${OURS}
    local_port = 4500
    remote_port = 1030
    proposals = aes128gcm16-prfsha256-x25519
    local {
      auth = pubkey
      certs = peer.pem
    }
    remote {
      auth = pubkey
      cacerts = root.pem
    }
    children {
      dxp {
        mode = tunnel
        esp_proposals = aes128gcm16
        local_ts = 10.99.0.2/32
        remote_ts = 10.99.0.1/32
        start_action = none
      }
    }
  }
}
`);
    swan.loadAll();
  }, 120_000);

  afterAll(async () => {
    for (const a of agents) await a.stop().catch(() => undefined);
    await swan?.stop();
    quiet('ip', 'netns', 'del', NS_OURS);
    quiet('ip', 'netns', 'del', NS_SWAN);
    pki?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    // One agent at a time: a test that failed half-way must not keep the port.
    for (const a of agents.splice(0)) await a.stop().catch(() => undefined);
  });

  it('ours initiates with rsaPss: charon verifies RSA_EMSA_PSS, and signs its own with PSS', async () => {
    swan!.clearLog();
    const a = await startAgent('pss-i', { rsaPss: true });
    const r = await a.call({ op: 'initiate', remote: { address: SWAN, port: 500 } });
    expect(r.ok, JSON.stringify(r)).toBe(true);
    expect((r.sa as { scheme: string }).scheme).toBe('RSA-PSS-SHA256');
    const log = swan!.log();
    expect(log).toMatch(
      /authentication of 'O=distnat, OU=198\.51\.100\.30, [^']*' with RSA_EMSA_PSS_SHA2_256_SALT_32 successful/,
    );
    expect(log).toMatch(
      /authentication of 'O=distnat, CN=203\.0\.113\.3' \(myself\) with RSA_EMSA_PSS_SHA2_256_SALT_32 successful/,
    );
    expect(await a.call({ op: 'ping' })).toMatchObject({ ok: true });
    await a.stop();
    await until(() => !swan!.swanctl('--list-sas').includes('ESTABLISHED'));
  });

  it('charon initiates: ours verifies its PSS signature and answers with one', async () => {
    swan!.clearLog();
    const a = await startAgent('pss-r', { rsaPss: true });
    expect(swan!.swanctl('--initiate', '--child', 'dxp')).toContain('initiate completed successfully');
    const sas = (await a.call({ op: 'sas' })).sas as { role: string; scheme: string }[];
    expect(sas).toMatchObject([{ role: 'responder', scheme: 'RSA-PSS-SHA256' }]);
    expect(swan!.log()).toMatch(
      /authentication of 'O=distnat, OU=198\.51\.100\.30, [^']*' with RSA_EMSA_PSS_SHA2_256_SALT_32 successful/,
    );
    swan!.swanctl('--terminate', '--ike', 'dxp');
    await a.stop();
  });

  it('control: with rsaPss off ours signs PKCS #1 v1.5 and charon says so; charon still signs PSS', async () => {
    swan!.clearLog();
    const a = await startAgent('pkcs1', { rsaPss: false });
    const r = await a.call({ op: 'initiate', remote: { address: SWAN, port: 500 } });
    expect(r.ok).toBe(true);
    expect((r.sa as { scheme: string }).scheme).toBe('RSA-PSS-SHA256');
    const log = swan!.log();
    expect(log).toMatch(
      /authentication of 'O=distnat, OU=198\.51\.100\.30, [^']*' with RSA_EMSA_PKCS1_SHA2_256 successful/,
    );
    expect(log).not.toMatch(/OU=198\.51\.100\.30, [^']*' with RSA_EMSA_PSS/);
    await a.stop();
  });
});
