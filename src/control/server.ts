import { connect, createServer, type Server } from 'node:net';
import { unlinkSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ControlReply, ControlRequest } from './protocol.ts';

export type StatusProvider = () => unknown;

/** True when a live process accepts connections on the socket at `path`. */
export function socketAnswers(path: string, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(path);
    const done = (live: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(live);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * Serves status requests on a Unix socket. A socket file left by a crash is
 * replaced; one a live daemon still answers on is not (EADDRINUSE), so a
 * second daemon can never steal the first one's status channel.
 */
export async function startControlServer(path: string, status: StatusProvider): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true });
  if (await socketAnswers(path)) {
    throw Object.assign(new Error(`a running daemon already answers on ${path}`), { code: 'EADDRINUSE' });
  }
  try {
    unlinkSync(path);
  } catch {
    // no stale socket
  }
  const server = createServer((conn) => {
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > 4096) conn.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let reply: ControlReply;
      try {
        const req = JSON.parse(buf.slice(0, nl)) as ControlRequest;
        reply =
          req.command === 'status' ? { ok: true, status: status() } : { ok: false, error: 'unknown command' };
      } catch (e) {
        reply = { ok: false, error: (e as Error).message };
      }
      conn.end(JSON.stringify(reply) + '\n');
    });
    conn.on('error', () => conn.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
