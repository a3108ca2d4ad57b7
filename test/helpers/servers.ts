/**
 * Traffic endpoints inside namespaces: a static HTTP server and an iperf3
 * server. Both resolve only once the socket is listening, checked with ss(8)
 * in the namespace, so a client started right after cannot race them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execIn, spawnBackground, waitUntil } from './process.ts';
import type { Background } from './process.ts';

/** Debian's python3; the one first on PATH may be another build. */
const PYTHON = '/usr/bin/python3';

export interface HttpServerOptions {
  port?: number;
  /** Address to bind; default all. */
  bind?: string;
  /** Files to serve, by name; default { 'hello.txt': 'hello from distnat\n' }. */
  files?: Record<string, string | Buffer>;
  /**
   * Send each file at most this fast (bytes per second), paced by the
   * server's writes. A client's --limit-rate paces its reads only: the
   * kernel's receive buffer (up to tcp_rmem's megabytes) can hold much of a
   * file already delivered, so the network may go quiet long before the
   * client's file stops growing.
   */
  bytesPerSecond?: number;
}

/** http.server with every file written in slices at a fixed rate (argv: port, root, bytes per second, bind). */
const PACED_HTTP_PY = String.raw`
import functools, http.server, os, sys, time
port, root, rate, bind = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
SLICE = max(1024, rate // 50)

class Paced(http.server.SimpleHTTPRequestHandler):
    def copyfile(self, src, dst):
        start, sent = time.monotonic(), 0
        while True:
            b = src.read(SLICE)
            if not b:
                return
            dst.write(b)
            sent += len(b)
            ahead = start + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer((bind, port), functools.partial(Paced, directory=root)).serve_forever()
`;

export interface HttpServer extends Background {
  readonly port: number;
  /** The directory served (removed when the server exits). */
  readonly root: string;
  /** `http://<address>:<port>/<path>`. */
  url(address: string, path?: string): string;
}

export interface Iperf3ServerOptions {
  port?: number;
  bind?: string;
  /** Serve one test and exit (iperf3 -1). */
  oneOff?: boolean;
}

export interface Iperf3Server extends Background {
  readonly port: number;
}

/** Resolves when something in `ns` listens on TCP `port`; rejects if `proc` exits first. */
export async function waitForListen(
  ns: string,
  port: number,
  proc?: Background,
  timeoutMs = 10_000,
): Promise<void> {
  await waitUntil(
    `a TCP listener on port ${port} in ${ns}`,
    async () => {
      if (proc !== undefined && !proc.running()) {
        throw new Error(
          `${proc.argv.join(' ')} exited before listening\nstdout: ${proc.stdout()}\nstderr: ${proc.stderr()}`,
        );
      }
      const r = await execIn(ns, ['ss', '-Hltn', `sport = :${port}`]);
      return r.code === 0 && r.stdout.trim() !== '';
    },
    { timeoutMs },
  );
}

export async function startHttpServer(ns: string, options: HttpServerOptions = {}): Promise<HttpServer> {
  const port = options.port ?? 8080;
  const root = mkdtempSync(join(tmpdir(), 'distnat-http-'));
  for (const [name, content] of Object.entries(options.files ?? { 'hello.txt': 'hello from distnat\n' })) {
    writeFileSync(join(root, name), content);
  }
  const argv =
    options.bytesPerSecond === undefined
      ? [PYTHON, '-m', 'http.server', String(port), '--directory', root]
      : [PYTHON, '-c', PACED_HTTP_PY, String(port), root, String(options.bytesPerSecond), options.bind ?? ''];
  if (options.bind !== undefined && options.bytesPerSecond === undefined) argv.push('--bind', options.bind);
  const proc = spawnBackground(ns, argv);
  void proc.exited.then(() => rmSync(root, { recursive: true, force: true }));
  try {
    await waitForListen(ns, port, proc);
  } catch (e) {
    await proc.stop({ signal: 'SIGKILL' });
    throw e;
  }
  return Object.assign(proc, {
    port,
    root,
    url: (address: string, path = '') => `http://${address}:${port}/${path}`,
  });
}

export async function startIperf3Server(
  ns: string,
  options: Iperf3ServerOptions = {},
): Promise<Iperf3Server> {
  const port = options.port ?? 5201;
  const argv = ['iperf3', '-s', '-p', String(port)];
  if (options.bind !== undefined) argv.push('-B', options.bind);
  if (options.oneOff === true) argv.push('-1');
  const proc = spawnBackground(ns, argv);
  try {
    await waitForListen(ns, port, proc);
  } catch (e) {
    await proc.stop({ signal: 'SIGKILL' });
    throw e;
  }
  return Object.assign(proc, { port });
}
