/**
 * `distnat status` and `distnat withdraw` refused by file permissions say
 * so (77) with the way in, instead of "not running" (69). The advice is
 * derived from the socket's and the run directory's owner and mode; the real
 * command run as user nobody against a live socket is
 * test/netns/cli-access.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { explainDenied, typedCommand } from '../../../src/cli/control-access.ts';

const STATUS = 'distnat status router';

describe('explainDenied', () => {
  const asker = { user: 'alice' };

  it('a socket only its owner may use: root or the owner, and what the group would need', () => {
    const text = explainDenied(
      STATUS,
      { path: '/run/distnat/router.sock', owner: 'distnat', group: 'distnat', mode: 0o750 },
      { path: '/run/distnat', owner: 'distnat', group: 'distnat', mode: 0o750 },
      asker,
    );
    expect(text).toBe(
      '/run/distnat/router.sock belongs to distnat:distnat, mode 0750; alice may not connect to it.\n' +
        'To get access, run it as root: sudo distnat status router,\n' +
        "  or as the daemon's user: sudo -u distnat distnat status router,\n" +
        "  or let the group distnat in: the daemon's umask must leave the socket group-writable " +
        '(UMask=0007 in its systemd unit), then sudo usermod -aG distnat alice.',
    );
  });

  it('a socket the group may use: joining the group is enough', () => {
    const text = explainDenied(
      STATUS,
      { path: '/run/distnat/router.sock', owner: 'distnat', group: 'distnat', mode: 0o770 },
      { path: '/run/distnat', owner: 'distnat', group: 'distnat', mode: 0o750 },
      asker,
    );
    expect(text).toMatch(
      /\n {2}or join the group distnat: sudo usermod -aG distnat alice \(then log in again\)\.$/,
    );
  });

  it('a directory that hides the socket: the directory is named', () => {
    const text = explainDenied(
      STATUS,
      undefined,
      {
        path: '/run/distnat',
        owner: 'distnat',
        group: 'distnat',
        mode: 0o700,
      },
      asker,
    );
    expect(text).toMatch(
      /^\/run\/distnat belongs to distnat:distnat, mode 0700; alice may not look inside it\.\n/,
    );
    expect(text).toContain('group-writable');
  });

  it('a root-owned socket: only root, no group advice', () => {
    const text = explainDenied(
      STATUS,
      { path: '/tmp/r/router.sock', owner: 'root', group: 'root', mode: 0o755 },
      { path: '/tmp/r', owner: 'root', group: 'root', mode: 0o755 },
      asker,
    );
    expect(text).toBe(
      '/tmp/r/router.sock belongs to root:root, mode 0755; alice may not connect to it.\n' +
        'To get access, run it as root: sudo distnat status router.',
    );
  });

  it('the command is repeated as typed, quoted where a shell needs it', () => {
    expect(typedCommand(['status', 'host', '--run-dir', '/run/my dir'])).toBe(
      "distnat status host --run-dir '/run/my dir'",
    );
  });
});
