/**
 * The control socket's withdraw request: validated before it reaches the
 * router, answered through the handler, refused by a daemon without one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { describeWithdrawal } from '../../../src/cli/commands/withdraw.ts';
import { controlRequest } from '../../../src/control/client.ts';
import type { WithdrawKind } from '../../../src/control/protocol.ts';
import { answerControl, startControlServer } from '../../../src/control/server.ts';

const cleanup: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const status = () => ({ role: 'router' });

describe('control socket: withdraw', () => {
  it('refuses bad hosts and kinds before calling the handler', async () => {
    const calls: string[] = [];
    const handlers = {
      withdraw: (host: string, kind: WithdrawKind) => {
        calls.push(`${host} ${kind}`);
        return Promise.resolve({ host, blocks: [], revoked: [] });
      },
    };
    for (const host of ['10.0.0.256', 'h1', '', 7]) {
      const r = await answerControl(
        { command: 'withdraw', host: host as string, kind: 'all' },
        status,
        handlers,
      );
      expect(r).toMatchObject({ ok: false, error: expect.stringMatching(/host must be an IPv4/) });
    }
    const r = await answerControl(
      { command: 'withdraw', host: '10.0.0.1', kind: 'ports' as WithdrawKind },
      status,
      handlers,
    );
    expect(r).toMatchObject({
      ok: false,
      error: expect.stringMatching(/kind must be one of port, spi, all/),
    });
    expect(calls).toEqual([]);
    expect(
      await answerControl({ command: 'withdraw', host: '10.0.0.1', kind: 'spi' }, status, handlers),
    ).toEqual({
      ok: true,
      withdrawn: { host: '10.0.0.1', blocks: [], revoked: [] },
    });
    expect(calls).toEqual(['10.0.0.1 spi']);
  });

  it('a daemon without a withdraw handler says so; a failing handler becomes an error reply', async () => {
    expect(await answerControl({ command: 'withdraw', host: '10.0.0.1', kind: 'all' }, status)).toEqual({
      ok: false,
      error: 'this daemon withdraws nothing',
    });
    const failing = { withdraw: () => Promise.reject(new Error('journal: disk full')) };
    expect(
      await answerControl({ command: 'withdraw', host: '10.0.0.1', kind: 'all' }, status, failing),
    ).toEqual({
      ok: false,
      error: 'journal: disk full',
    });
  });

  it('goes over the Unix socket and back, status still answered', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dxr-control-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'router.sock');
    const server = await startControlServer(path, status, {
      withdraw: (host) =>
        new Promise((resolve) =>
          setTimeout(
            () =>
              resolve({
                host,
                blocks: [{ kind: 'port', lowest: 1024, count: 32 }],
                revoked: ['ab'],
                crlNumber: 7,
              }),
            20,
          ),
        ),
    });
    cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
    expect(await controlRequest(path, { command: 'status' })).toEqual({
      ok: true,
      status: { role: 'router' },
    });
    const reply = await controlRequest(path, { command: 'withdraw', host: '10.0.0.1', kind: 'all' });
    expect(reply).toEqual({
      ok: true,
      withdrawn: {
        host: '10.0.0.1',
        blocks: [{ kind: 'port', lowest: 1024, count: 32 }],
        revoked: ['ab'],
        crlNumber: 7,
      },
    });
    if (reply.ok && reply.withdrawn)
      expect(describeWithdrawal(reply.withdrawn)).toBe(
        'withdrew ports 1024-1055 from 10.0.0.1\nrevoked certificate ab (privilegeWithdrawn)\nCRL 7 lists them and is published',
      );
  });
});
