import { connect, createServer, isIPv4, type Server } from 'node:net';
import { unlinkSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ControlReply, ControlRequest, WithdrawKind, WithdrawOutcome } from './protocol.ts';
import { WITHDRAW_KINDS } from './protocol.ts';

export type StatusProvider = () => unknown;

/** Requests beyond status that a daemon answers; a daemon without one answers "unknown command". */
export interface ControlHandlers {
  withdraw?(host: string, kind: WithdrawKind): Promise<WithdrawOutcome>;
}

/** One request to its reply; never rejects, a failed handler becomes { ok: false }. */
export async function answerControl(
  req: ControlRequest,
  status: StatusProvider,
  handlers: ControlHandlers = {},
): Promise<ControlReply> {
  try {
    switch (req.command) {
      case 'status':
        return { ok: true, status: status() };
      case 'withdraw': {
        if (handlers.withdraw === undefined) return { ok: false, error: 'this daemon withdraws nothing' };
        if (typeof req.host !== 'string' || !isIPv4(req.host))
          return {
            ok: false,
            error: `withdraw: host must be an IPv4 LAN address, not ${JSON.stringify(req.host)}`,
          };
        if (!WITHDRAW_KINDS.includes(req.kind))
          return { ok: false, error: `withdraw: kind must be one of ${WITHDRAW_KINDS.join(', ')}` };
        return { ok: true, withdrawn: await handlers.withdraw(req.host, req.kind) };
      }
      default:
        return { ok: false, error: 'unknown command' };
    }
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

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
 * Serves status (and, with handlers, withdraw) requests on a Unix socket. A socket file left by a crash is
 * replaced; one a live daemon still answers on is not (EADDRINUSE), so a
 * second daemon can never steal the first one's status channel.
 */
export async function startControlServer(
  path: string,
  status: StatusProvider,
  handlers: ControlHandlers = {},
): Promise<Server> {
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
    let answered = false;
    conn.on('data', (chunk: string) => {
      if (answered) return;
      buf += chunk;
      if (buf.length > 4096) conn.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      answered = true;
      let req: ControlRequest;
      try {
        req = JSON.parse(buf.slice(0, nl)) as ControlRequest;
      } catch (e) {
        conn.end(JSON.stringify({ ok: false, error: (e as Error).message } satisfies ControlReply) + '\n');
        return;
      }
      void answerControl(req, status, handlers).then((reply) => {
        if (!conn.destroyed) conn.end(JSON.stringify(reply) + '\n');
      });
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
