/**
 * What `distnat status` and `distnat withdraw` say when the daemon's control
 * socket cannot be reached. Two cases a network engineer must tell apart:
 * nothing runs there (69, start it), or something runs and this user may not
 * talk to it (77, get access). Connecting to a Unix socket takes search
 * permission on every directory above it and write permission on the socket
 * itself; the installed daemons make /run/distnat 0750 and the socket 0750
 * (owner distnat, umask 0027), so only root and the daemon's user get in.
 */
import { readFileSync, statSync, type Stats } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname } from 'node:path';
import { ExitCode, UserError } from '../util/exit-codes.ts';

/** The owner, group and mode of a path, as far as this user can see it. */
export interface PathAccess {
  readonly path: string;
  readonly owner: string;
  readonly group: string;
  readonly mode: number;
}

/** Who asks. */
export interface Asker {
  readonly user: string;
}

/** uid or gid -> name from /etc/passwd or /etc/group; the number when it is not listed. */
function nameOf(file: string, id: number): string {
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 3 && Number(f[2]) === id) return f[0]!;
    }
  } catch {
    // No such file: numbers will do.
  }
  return String(id);
}

function access(path: string): PathAccess | undefined {
  let st: Stats;
  try {
    st = statSync(path);
  } catch {
    return undefined;
  }
  return {
    path,
    owner: nameOf('/etc/passwd', st.uid),
    group: nameOf('/etc/group', st.gid),
    mode: st.mode & 0o7777,
  };
}

const octal = (mode: number): string => mode.toString(8).padStart(4, '0');

/**
 * The explanation of a refused connection, from what can be seen of the
 * socket (undefined when its directory hides it) and its directory.
 */
export function explainDenied(
  command: string,
  socket: PathAccess | undefined,
  dir: PathAccess | undefined,
  asker: Asker,
): string {
  const lines: string[] = [];
  const owner = socket?.owner ?? dir?.owner;
  const group = socket?.group ?? dir?.group;
  if (socket !== undefined)
    lines.push(
      `${socket.path} belongs to ${socket.owner}:${socket.group}, mode ${octal(socket.mode)}; ` +
        `${asker.user} may not connect to it.`,
    );
  else if (dir !== undefined)
    lines.push(
      `${dir.path} belongs to ${dir.owner}:${dir.group}, mode ${octal(dir.mode)}; ` +
        `${asker.user} may not look inside it.`,
    );
  const ways = [`run it as root: sudo ${command}`];
  if (owner !== undefined && owner !== 'root')
    ways.push(`or as the daemon's user: sudo -u ${owner} ${command}`);
  // Joining the group helps only when the group may search the directory and write to the socket.
  const groupWrites = socket !== undefined && (socket.mode & 0o020) !== 0;
  const groupSearches = dir === undefined || (dir.mode & 0o010) !== 0;
  if (group !== undefined && group !== 'root') {
    if (groupWrites && groupSearches)
      ways.push(`or join the group ${group}: sudo usermod -aG ${group} ${asker.user} (then log in again)`);
    else
      ways.push(
        `or let the group ${group} in: the daemon's umask must leave the socket group-writable ` +
          `(UMask=0007 in its systemd unit), then sudo usermod -aG ${group} ${asker.user}`,
      );
  }
  lines.push(`To get access, ${ways.join(',\n  ')}.`);
  return lines.join('\n');
}

/** The command line as typed, quoted for a shell where needed, for advice to run it again. */
export function typedCommand(args: readonly string[]): string {
  const quote = (a: string): string => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return ['distnat', ...args.map(quote)].join(' ');
}

/** The error for a failed connection to `socketPath`; `command` is what the user typed, for the advice. */
export function controlUnreachable(
  role: string,
  socketPath: string,
  runDir: string,
  command: string,
  e: NodeJS.ErrnoException,
): UserError {
  if (e.code === 'EACCES' || e.code === 'EPERM') {
    const asker = { user: userInfo().username };
    return new UserError(
      `permission denied: cannot connect to the ${role}'s control socket ${socketPath}\n` +
        explainDenied(command, access(socketPath), access(dirname(socketPath)), asker),
      ExitCode.NOPERM,
    );
  }
  return new UserError(
    `cannot reach a running ${role} at ${socketPath}: ${e.message}\n` +
      `Is \`distnat ${role}\` running with --run-dir ${runDir}?`,
    ExitCode.UNAVAILABLE,
  );
}
