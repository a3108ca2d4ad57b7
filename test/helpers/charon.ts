/**
 * A private strongSwan charon (Debian 5.9.8) inside a network namespace, for
 * the interop tests. The system's charon may run or not: this one has its
 * own strongswan.conf (STRONGSWAN_CONF), its own vici socket, and its own
 * /run (a tmpfs in a private mount namespace), because charon's pid file is
 * fixed at /run/charon.pid and a second charon would refuse to start.
 *
 * This kernel has no xfrm, so the charon uses kernel-libipsec: ESP in user
 * space, tunnel mode and ESP in UDP only, through a TUN device ipsec0.
 *
 *   const swan = await startCharon('dxk-swan', { dir });
 *   swan.writeCredential('x509ca', 'root.pem', rootPem);
 *   swan.writeSwanctlConf(`connections { ... }`);
 *   swan.loadAll();
 *   swan.swanctl('--initiate', '--child', 'dxk');
 *   await swan.stop();
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnBackground, waitUntil } from './process.ts';
import type { Background } from './process.ts';

export const CHARON = '/usr/lib/ipsec/charon';
export const HAVE_CHARON = existsSync(CHARON) && spawnSync('which', ['swanctl']).status === 0;

/** The credential directories swanctl reads beside its swanctl.conf. */
export type CredentialDir = 'x509' | 'x509ca' | 'x509crl' | 'private';

export interface CharonOptions {
  /** Holds strongswan.conf, swanctl.conf, the credential directories, charon.log and the vici socket. */
  dir: string;
  /**
   * How traffic reaches kernel-libipsec's TUN device, ipsec0.
   *
   * - 'none' (default): install_routes = no. kernel-libipsec routes each
   *   child SA's remote selector into ipsec0 all the same (its own routes
   *   do not heed install_routes), which is all a child SA between
   *   addresses other than the IKE endpoints needs.
   * - 'fwmark': for child SAs whose remote traffic selector holds the IKE
   *   peer's own address. charon routes the selector into ipsec0 in table
   *   220, and its rule for that table skips packets carrying the mark
   *   0x2a, which charon's sockets set on everything they send: IKE, and
   *   ESP-in-UDP, which libipsec sends through the same socket. Without the
   *   mark libipsec would swallow its own outer packets, so libipsec
   *   refuses such selectors unless allow_peer_ts is set, as here.
   */
  routes?: 'none' | 'fwmark';
  /**
   * Check certificates against CRLs (the revocation plugin's enable_crl).
   * No fetcher plugin is loaded, so only CRLs loaded with swanctl count;
   * without one the status is "not available", which charon accepts
   * (strictness no). Default false.
   */
  crl?: boolean;
  /** filelog level of the ike and chd groups (4 logs the keys). Default 4. */
  ikeLogLevel?: number;
  /** filelog level of the cfg group (2 shows how traffic selectors were chosen). Default 1. */
  cfgLogLevel?: number;
  /**
   * charon.fragment_size: the largest IP datagram of an IKE message before
   * charon fragments it (RFC 7383, when the peer offered fragmentation).
   * Default charon's own, 1280.
   */
  fragmentSize?: number;
  /** More lines for the charon section of strongswan.conf, as given. */
  charonSettings?: string;
}

export interface Charon {
  readonly dir: string;
  readonly proc: Background;
  readonly vici: string;
  /** swanctl in the namespace against this charon: its stdout; throws with its output when it fails. */
  swanctl(...args: string[]): string;
  /** swanctl without the throw: exit code, stdout and stderr. */
  trySwanctl(...args: string[]): { code: number | null; stdout: string; stderr: string };
  /** Writes a PEM file into one of swanctl's credential directories. */
  writeCredential(sub: CredentialDir, name: string, pem: string): string;
  writeSwanctlConf(text: string): void;
  /** `swanctl --load-all` with this charon's swanctl.conf (connections and credentials). */
  loadAll(): string;
  /** `swanctl --load-creds`: certificates, keys and CRLs from the credential directories. */
  loadCreds(): string;
  log(): string;
  clearLog(): void;
  /** SIGTERM to charon's process group, SIGKILL after 3 s. Safe to call twice. */
  stop(): Promise<void>;
}

const FWMARK = '0x2a';

function strongswanConf(o: Required<CharonOptions>): string {
  const fwmark = o.routes === 'fwmark';
  return `charon {
  load = random nonce openssl kdf pem pkcs1 pkcs8 x509 revocation constraints pubkey kernel-libipsec kernel-netlink socket-default vici
  install_routes = ${fwmark ? 'yes' : 'no'}
  install_virtual_ip = no
  retransmit_timeout = 2
  retransmit_tries = 3
${o.fragmentSize > 0 ? `  fragment_size = ${o.fragmentSize}\n` : ''}${o.charonSettings}  filelog {
    swan {
      path = ${o.dir}/charon.log
      time_format = %T
      flush_line = yes
      default = 1
      ike = ${o.ikeLogLevel}
      chd = ${o.ikeLogLevel}
      cfg = ${o.cfgLogLevel}
      lib = 1
    }
  }
  plugins {
    vici {
      socket = unix://${o.dir}/charon.vici
    }
    kernel-libipsec {
      allow_peer_ts = ${fwmark ? 'yes' : 'no'}
    }${
      fwmark
        ? `
    socket-default {
      fwmark = ${FWMARK}
    }
    kernel-netlink {
      fwmark = !${FWMARK}
    }`
        : ''
    }
    revocation {
      enable_crl = ${o.crl ? 'yes' : 'no'}
      enable_ocsp = no
    }
  }
}
`;
}

/** Starts charon in `ns` and resolves once its vici socket exists. */
export async function startCharon(ns: string, options: CharonOptions): Promise<Charon> {
  const o: Required<CharonOptions> = {
    routes: 'none',
    crl: false,
    ikeLogLevel: 4,
    cfgLogLevel: 1,
    fragmentSize: 0,
    charonSettings: '',
    ...options,
  };
  const dir = o.dir;
  for (const sub of ['x509', 'x509ca', 'x509crl', 'private']) mkdirSync(join(dir, sub), { recursive: true });
  const logFile = join(dir, 'charon.log');
  writeFileSync(logFile, '');
  writeFileSync(join(dir, 'strongswan.conf'), strongswanConf(o));
  const vici = `unix://${dir}/charon.vici`;
  const conf = join(dir, 'swanctl.conf');
  if (!existsSync(conf)) writeFileSync(conf, 'connections {\n}\n');

  const proc = spawnBackground(
    ns,
    [
      'unshare',
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      `mount -t tmpfs none /run && exec ${CHARON}`,
    ],
    { env: { ...process.env, STRONGSWAN_CONF: join(dir, 'strongswan.conf') } },
  );
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await proc.stop({ signal: 'SIGTERM', timeoutMs: 3000 });
  };
  try {
    await waitUntil(
      'charon listening on its vici socket',
      async () => {
        if (!proc.running())
          throw new Error(`charon exited: ${proc.stderr()} ${readFileSync(logFile, 'utf8')}`);
        return existsSync(join(dir, 'charon.vici'));
      },
      { timeoutMs: 15_000, intervalMs: 50 },
    );
  } catch (e) {
    await stop();
    throw e;
  }

  const trySwanctl = (...args: string[]): { code: number | null; stdout: string; stderr: string } => {
    // swanctl finds the credential directories beside the swanctl.conf given with --file.
    const r = spawnSync('ip', ['netns', 'exec', ns, 'swanctl', ...args, '--uri', vici], {
      encoding: 'utf8',
      cwd: dir,
      timeout: 30_000,
    });
    return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  };
  const swanctl = (...args: string[]): string => {
    const r = trySwanctl(...args);
    if (r.code !== 0)
      throw new Error(`swanctl ${args.join(' ')} (exit ${String(r.code)}): ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  return {
    dir,
    proc,
    vici,
    swanctl,
    trySwanctl,
    writeCredential: (sub, name, pem) => {
      const file = join(dir, sub, name);
      writeFileSync(file, pem);
      return file;
    },
    writeSwanctlConf: (text) => writeFileSync(conf, text),
    loadAll: () => swanctl('--load-all', '--noprompt', '--file', conf),
    loadCreds: () => swanctl('--load-creds', '--noprompt', '--file', conf),
    log: () => readFileSync(logFile, 'utf8'),
    clearLog: () => writeFileSync(logFile, ''),
    stop,
  };
}
