import type { Argv } from 'yargs';
import type { CommandMeta } from './command-meta.ts';
import { createCaCommands } from './ca-create.ts';
import { hostCertificateCommands } from './ca-host-cert.ts';
import { issuePeerCommand } from './ca-issue-peer.ts';
import { revokeCommands } from './ca-revoke.ts';
import { showCommand } from './ca-show.ts';

/**
 * `distnat ca ...`: the root CA (the patent's higher certificate authority),
 * the router's local CA, and the tools around them. docs/pki.md explains the
 * hierarchy and every field.
 */

export function caCommand(y: Argv, meta: CommandMeta) {
  return y.command(meta.usage, meta.describe, (a) =>
    // In the order help lists them.
    [issuePeerCommand, createCaCommands, hostCertificateCommands, showCommand, revokeCommands]
      .reduce<Argv>((b, register) => register(b), a)
      .demandCommand(1, 'Name a ca command: init, issue-local, issue-host, request, show, revoke or crl.')
      .example(
        '$0 ca init --dir root',
        'then: distnat ca issue-local --shared-address 198.51.100.30 --crl-address 203.0.113.1 --root root --out ca',
      ),
  );
}
