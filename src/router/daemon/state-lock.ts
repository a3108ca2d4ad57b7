/**
 * One router per state directory: `router.lock` holds the pid of the router
 * that uses the directory's lease journal. Created with O_EXCL, so two
 * routers starting at once cannot both win; a lock whose process is gone
 * (a SIGKILLed router) is taken over, and the takeover is reported.
 */
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ExitCode, UserError } from '../../util/exit-codes.ts';

export const LOCK_FILE = 'router.lock';

export class StateLock {
  private constructor(
    readonly path: string,
    /** Pid of a dead router whose lock this one took over. */
    readonly tookOverFrom: number | undefined,
  ) {}

  /** Takes the lock or throws a UserError (exit 73) naming the router that holds it. */
  static acquire(stateDir: string): StateLock {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const path = join(stateDir, LOCK_FILE);
    let stale: number | undefined;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, 'wx', 0o600);
        try {
          writeSync(fd, `${process.pid}\n`);
        } finally {
          closeSync(fd);
        }
        return new StateLock(path, stale);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new UserError(`cannot create the lock ${path}: ${(e as Error).message}`, ExitCode.CANTCREATE);
        }
      }
      const holder = readPid(path);
      if (holder !== undefined && holder !== process.pid && isRunningNode(holder)) {
        throw new UserError(
          `another router (pid ${holder}) is using the state directory ${stateDir}; ` +
            'stop it first, or give this one another --state-dir',
          ExitCode.CANTCREATE,
        );
      }
      if (holder === process.pid) {
        throw new UserError(
          `this process already runs a router on the state directory ${stateDir}`,
          ExitCode.CANTCREATE,
        );
      }
      stale = holder;
      try {
        unlinkSync(path);
      } catch {
        // someone else removed it first; the next attempt decides
      }
    }
    throw new UserError(`could not take the lock ${path}: another router is starting`, ExitCode.CANTCREATE);
  }

  /** Removes the lock if it is still this process's. */
  release(): void {
    if (readPid(this.path) !== process.pid) return;
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

function readPid(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * True when `pid` is alive and is a Node process (a router runs in node); a
 * reused pid of something else does not hold the lock.
 */
function isRunningNode(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  try {
    return /node|distnat/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
  } catch {
    return true;
  }
}
