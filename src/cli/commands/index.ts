/**
 * The commands of `distnat`, in the order `--help` lists them. Only the
 * command being run is loaded (a daemon pulls in the whole data path, IKE
 * and the CA; `distnat status` needs none of it); the others are listed by
 * their usage and description alone.
 */
import type { Argv } from 'yargs';
import type { CommandMeta } from './command-meta.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Register = (y: Argv<any>, meta: CommandMeta) => Argv<any>;

export interface CommandEntry extends CommandMeta {
  /** The word that selects it. */
  readonly name: string;
  load(): Promise<Register>;
}

export const COMMANDS: readonly CommandEntry[] = [
  {
    name: 'status',
    usage: 'status [role]',
    describe: 'print the live tables and counters of a running router or host',
    load: async () => (await import('./status.ts')).statusCommand,
  },
  {
    name: 'router',
    usage: 'router',
    describe:
      'run the gateway (patent "router 26"): PAP server, lease tables, forwarding between the hosts\' tunnels and the WAN',
    load: async () => (await import('./router.ts')).routerCommand,
  },
  {
    name: 'host',
    usage: 'host',
    describe:
      'run the host agent: lease ports from the router (PAP) and tunnel through it (patent network device 14/18)',
    load: async () => (await import('./host.ts')).hostCommand,
  },
  {
    name: 'check',
    usage: 'check',
    describe:
      'validate router, host, manual keying and IKE files as the daemons do at start, without starting anything',
    load: async () => (await import('./check.ts')).checkCommand,
  },
  {
    name: 'ca',
    usage: 'ca <command>',
    describe: 'root CA, local CA and host certificates (the router as local CA)',
    load: async () => (await import('./ca.ts')).caCommand,
  },
  {
    name: 'peer',
    usage: 'peer',
    describe:
      "run the far end of a distnat host's IPsec SAs on a machine with its own address (userspace ESP/AH)",
    load: async () => (await import('./peer.ts')).peerCommand,
  },
  {
    name: 'withdraw',
    usage: 'withdraw <host>',
    describe: "take a host's leased blocks back; the router's local CA revokes their certificates",
    load: async () => (await import('./withdraw.ts')).withdrawCommand,
  },
];

/**
 * Registers every command on `cli`: the one named by `word` in full, the
 * others by usage and description only, which is all `--help` and
 * did-you-mean need.
 */
export async function registerCommands<T>(cli: Argv<T>, word: string | undefined): Promise<Argv<T>> {
  let out: Argv<T> = cli;
  for (const entry of COMMANDS) {
    const meta = { usage: entry.usage, describe: entry.describe };
    if (entry.name !== word) {
      out = out.command(meta.usage, meta.describe);
      continue;
    }
    // Stack traces from a command (a daemon's above all) point into src/. Turned on only now: Node reads
    // and parses the source map of every module loaded after this, and the command line's own bundle,
    // yargs included, would cost more to map than to run.
    process.setSourceMapsEnabled(true);
    out = (await entry.load())(out, meta);
  }
  return out;
}
