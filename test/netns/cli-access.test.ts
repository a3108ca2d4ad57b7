/**
 * `distnat status` and `distnat withdraw` run by a user the control socket
 * refuses: exit 77 and how to get in, not "not running" (69). The command
 * runs as nobody, so it is the installed package's (test/helpers/package.ts):
 * a checkout under /root is closed to nobody. What the messages say for each
 * owner and mode is in test/unit/cli/control-access.test.ts.
 */
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';

const DISTNAT = inject('distnatPackage').bin;

/** uid and gid of a system account that is neither root nor nobody, from /etc/passwd. */
function daemonAccount(): { name: string; uid: number; gid: number } | undefined {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (name === 'daemon') return { name, uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}

const asNobody = (args: string[]): Promise<{ code: number | null; stderr: string }> =>
  new Promise((done, fail) => {
    const p = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', DISTNAT, ...args]);
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', fail);
    p.on('close', (code) => done({ code, stderr }));
  });

const account = daemonAccount();
describe.skipIf(account === undefined)('distnat status as an unprivileged user', { timeout: 60_000 }, () => {
  const work = mkdtempSync(join(tmpdir(), 'dxa-access-'));
  chmodSync(work, 0o755);
  const servers: Server[] = [];
  afterAll(async () => {
    for (const s of servers) await new Promise((r) => s.close(r));
    rmSync(work, { recursive: true, force: true });
  });

  /** A run directory owned by the daemon account with a live router.sock in it. */
  async function runDir(name: string, dirMode: number, socketMode: number): Promise<string> {
    const dir = join(work, name);
    mkdirSync(dir);
    // Read (and drop) the request, or the client's end is never seen and close() never returns.
    const server = createServer((c) =>
      c.resume().end('{"ok":true,"status":{"summary":{},"tables":[],"counters":{}}}'),
    );
    await new Promise<void>((r) => server.listen(join(dir, 'router.sock'), r));
    servers.push(server);
    chownSync(join(dir, 'router.sock'), account!.uid, account!.gid);
    chmodSync(join(dir, 'router.sock'), socketMode);
    chownSync(dir, account!.uid, account!.gid);
    chmodSync(dir, dirMode);
    return dir;
  }

  it('a socket it may not write to: 77, not "not running", and how to get access', async () => {
    const dir = await runDir('owner-only', 0o755, 0o750);
    const r = await asNobody(['status', 'router', '--run-dir', dir]);
    expect(r.code).toBe(77);
    expect(r.stderr).toBe(
      `distnat: permission denied: cannot connect to the router's control socket ${dir}/router.sock\n` +
        `${dir}/router.sock belongs to daemon:daemon, mode 0750; nobody may not connect to it.\n` +
        `To get access, run it as root: sudo distnat status router --run-dir ${dir},\n` +
        `  or as the daemon's user: sudo -u daemon distnat status router --run-dir ${dir},\n` +
        "  or let the group daemon in: the daemon's umask must leave the socket group-writable " +
        '(UMask=0007 in its systemd unit), then sudo usermod -aG daemon nobody.\n',
    );
  });

  it('a run directory it may not enter: 77, naming the directory', async () => {
    const dir = await runDir('closed-dir', 0o750, 0o770);
    const r = await asNobody(['status', 'router', '--run-dir', dir]);
    expect(r.code).toBe(77);
    expect(r.stderr).toContain(
      `\n${dir} belongs to daemon:daemon, mode 0750; nobody may not look inside it.\n`,
    );
  });

  it('withdraw refused the same way: 77', async () => {
    const dir = await runDir('withdraw', 0o755, 0o700);
    const r = await asNobody(['withdraw', '10.0.0.1', '--run-dir', dir]);
    expect(r.code).toBe(77);
    expect(r.stderr).toMatch(/^distnat: permission denied: cannot connect to the router's control socket /);
  });

  it('and the same socket open to all answers: so 77 was the permission, not the socket', async () => {
    const dir = await runDir('open', 0o755, 0o777);
    const r = await asNobody(['status', 'router', '--run-dir', dir]);
    expect([r.code, r.stderr]).toEqual([0, '']);
  });
});
