/**
 * The control socket: a Unix stream socket in the run directory on which a
 * daemon answers one JSON request per connection with one JSON reply. It is
 * how `distnat status` reads live tables without a network port, and how
 * `distnat withdraw` asks the router to take a host's blocks back.
 *
 * Who may connect is decided by the socket file's permissions (the daemon's
 * umask, normally owner only) and the run directory's: withdrawing is as
 * privileged as stopping the router.
 */
export type WithdrawKind = 'port' | 'spi' | 'all';
export const WITHDRAW_KINDS: readonly WithdrawKind[] = ['port', 'spi', 'all'];

export type ControlRequest =
  | { command: 'status' }
  /** Take back every block of `kind` that `host` (a LAN address) leases now. */
  | { command: 'withdraw'; host: string; kind: WithdrawKind };

/** What a withdrawal did, for the person who asked. */
export interface WithdrawOutcome {
  readonly host: string;
  /** The blocks taken back, each journalled and announced to the host with a PAP withdraw. */
  readonly blocks: readonly {
    readonly kind: 'port' | 'spi';
    /** With several shared addresses, a port block's: `lowest` is then the port on it. */
    readonly address?: string;
    readonly lowest: number;
    readonly count: number;
  }[];
  /** Serials of the certificates the local CA revoked because of it (privilegeWithdrawn). */
  readonly revoked: readonly string[];
  /** The number of the CRL that lists them, published before the reply; absent without a local CA. */
  readonly crlNumber?: number;
}

export type ControlReply =
  { ok: true; status?: unknown; withdrawn?: WithdrawOutcome } | { ok: false; error: string };

export function controlSocketPath(runDir: string, role: 'router' | 'host' | 'peer', name?: string): string {
  return `${runDir}/${role}${name ? `-${name}` : ''}.sock`;
}
