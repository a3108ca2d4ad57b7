import { createServer, type Server } from 'node:net';
import { unlinkSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ControlReply, ControlRequest } from './protocol.ts';

export type StatusProvider = () => unknown;

/** Serves status requests on a Unix socket; replaces a stale socket file left by a crash. */
export function startControlServer(path: string, status: StatusProvider): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true });
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
