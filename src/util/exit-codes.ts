/** Exit codes from sysexits.h, so scripts and systemd can tell failures apart. */
export const ExitCode = {
  OK: 0,
  FAILURE: 1,
  USAGE: 64, // EX_USAGE: bad command line
  UNAVAILABLE: 69, // EX_UNAVAILABLE: the router or daemon cannot be reached
  SOFTWARE: 70, // EX_SOFTWARE: an internal error
  CANTCREATE: 73, // EX_CANTCREAT: a file or device could not be created
  NOPERM: 77, // EX_NOPERM: needs root or CAP_NET_ADMIN / CAP_NET_RAW
  CONFIG: 78, // EX_CONFIG: invalid configuration
} as const;

/** An error meant for the person at the terminal: the message is the whole story. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = ExitCode.FAILURE,
  ) {
    super(message);
    this.name = 'UserError';
  }
}
