/**
 * Where a testbed keeps its files and what its namespaces are called: one
 * place for scripts/testbed, its TypeScript half and the test helpers, so
 * that a pid file, a log or a CA directory is found where it was made.
 *
 *   <run-root>/<prefix>/               the testbed's run directory
 *     <name>.pid, <name>.log           each process of the process table
 *     <node>/                          a daemon's state, control socket, IKE file
 *     pki/root, pki/server, pki.log    the root CA, the server's certificate
 *     router/state/ca                  the router's local CA
 *     router2/state/ca                 router2's copy of its key and certificate (--routers 2)
 *     ike                              present while the testbed runs IKE
 *     routers                          the number of routers (--routers), while up
 *     <node>/bird/                     BIRD's configuration and control socket (--routers 2)
 *     etcd<n>/data                     an etcd member's data (--routers 2)
 *     setup/<node>/, offload           what scripts/testbed's plumbing keeps
 */
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const TESTBED_SCRIPT = join(ROOT, 'scripts', 'testbed');
export const DISTNAT = join(ROOT, 'bin', 'distnat');
/** Debian's python3 (scripts/setup installs it, with scapy); the one first on PATH may be another build. */
export const PYTHON = '/usr/bin/python3';

/** The directory that holds every testbed's run directory: DN_RUN_DIR, or <checkout>/run. */
export function defaultRunRoot(): string {
  return resolve(process.env['DN_RUN_DIR'] ?? join(ROOT, 'run'));
}

export class TestbedLayout {
  /** The testbed's own run directory, <run-root>/<prefix>. */
  readonly runDir: string;

  constructor(
    readonly prefix: string,
    runRoot: string = defaultRunRoot(),
  ) {
    this.runDir = join(runRoot, prefix);
  }

  /** The namespace of a node: <prefix><node>. */
  ns(node: string): string {
    return this.prefix + node;
  }

  pidFile(name: string): string {
    return join(this.runDir, `${name}.pid`);
  }

  logFile(name: string): string {
    return join(this.runDir, `${name}.log`);
  }

  /** A daemon's run directory (control socket) and the parent of its state directory. */
  nodeDir(node: string): string {
    return join(this.runDir, node);
  }

  /** The root CA (the patent's higher CA). */
  get rootCa(): string {
    return join(this.runDir, 'pki', 'root');
  }

  /** The router's local CA, under its state directory. */
  get routerCa(): string {
    return join(this.nodeDir('router'), 'state', 'ca');
  }

  /** router2's copy of the same local CA (--routers 2): one CA and one CRL for both routers. */
  get router2Ca(): string {
    return join(this.nodeDir('router2'), 'state', 'ca');
  }

  /** The server's certificate from the root, for IKE. */
  get serverPki(): string {
    return join(this.runDir, 'pki', 'server');
  }

  /** What the `distnat ca` commands said. */
  get pkiLog(): string {
    return join(this.runDir, 'pki.log');
  }

  /** Present while the testbed runs IKE (`up --ike` until `down`). */
  get ikeMarker(): string {
    return join(this.runDir, 'ike');
  }

  /** Present while the testbed runs manual keying (`up --ipsec` until `down`). */
  get ipsecMarker(): string {
    return join(this.runDir, 'ipsec');
  }

  /** A host's manual keying file (`distnat host --ipsec`), which the server's peer mirrors. */
  ipsecFile(host: string): string {
    return join(this.nodeDir(host), 'ipsec.yaml');
  }

  ikeFile(node: string): string {
    return join(this.nodeDir(node), 'ike.yaml');
  }

  /** The number of routers the testbed was brought up with (scripts/testbed writes it). */
  get routersFile(): string {
    return join(this.runDir, 'routers');
  }

  /** Where BIRD's configuration and control socket are for a router or the server. */
  birdDir(node: string): string {
    return join(this.nodeDir(node), 'bird');
  }

  birdConfig(node: string): string {
    return join(this.birdDir(node), 'bird.conf');
  }

  birdSocket(node: string): string {
    return join(this.birdDir(node), 'bird.ctl');
  }

  /** An etcd member's data directory. */
  etcdData(member: string): string {
    return join(this.nodeDir(member), 'data');
  }

  /** " --prefix P" for messages that suggest a command, empty for the default prefix. */
  get prefixFlag(): string {
    return this.prefix === 'dn-' ? '' : ` --prefix ${this.prefix}`;
  }
}
