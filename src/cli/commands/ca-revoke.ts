/** `distnat ca revoke` and `distnat ca crl`: revocation, and the CRLs that publish it. */
import { join } from 'node:path';
import type { Argv } from 'yargs';
import {
  CertificateAuthority,
  crlToPem,
  describeCrl,
  readCertificates,
  type RevocationReason,
} from '../../pki/index.ts';
import { writeFileAtomic } from '../../pki/files.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import { REASONS, defaultLifetime, guard, out, readInput } from './ca-common.ts';

export function revokeCommands(y: Argv) {
  return y
    .command(
      'revoke',
      'revoke a certificate a CA issued and write a fresh CRL',
      (b) =>
        b
          .option('ca', {
            type: 'string',
            demandOption: true,
            describe: 'directory of the CA that issued it',
          })
          .option('serial', { type: 'string', describe: 'serial number, hex' })
          .option('cert', { type: 'string', describe: 'or the certificate file' })
          .option('reason', { choices: REASONS, default: 'unspecified' as RevocationReason })
          .option('lifetime', {
            type: 'number',
            describe: 'CRL lifetime in seconds (default 600 local, 7 days root)',
          })
          .example('$0 ca revoke --ca ca --serial 4f1c... --reason keyCompromise', '')
          .example('$0 ca revoke --ca root --cert ca/ca.pem --reason cACompromise', 'revoke a whole router'),
      (argv) =>
        guard(async () => {
          // Checked here, not with yargs' check(): main.ts takes errors thrown there for bugs.
          if ((argv.serial === undefined) === (argv.cert === undefined))
            throw new UserError('give either --serial or --cert', ExitCode.USAGE);
          const ca = await CertificateAuthority.open(argv.ca);
          const serial = (
            argv.serial ??
            readCertificates(readInput(argv.cert!, 'certificate'))[0]?.serialNumber ??
            ''
          )
            .toLowerCase()
            .replace(/:/g, '');
          const outcome = ca.revoke(serial, argv.reason);
          if (outcome === 'unknown-serial')
            throw new UserError(
              `${argv.ca} never issued serial ${serial} (see \`distnat ca show ${argv.ca}\`)`,
            );
          const crl = await ca.makeCrl(argv.lifetime ?? defaultLifetime(ca));
          out(outcome === 'revoked' ? `revoked ${serial} (${argv.reason})` : `${serial} was already revoked`);
          out(`wrote ${join(argv.ca, 'crl.pem')}\n`);
          out(describeCrl(crl));
        }),
    )
    .command(
      'crl',
      'sign a fresh CRL for a CA and write it to the CA directory (and --out)',
      (b) =>
        b
          .option('ca', { type: 'string', demandOption: true, describe: 'CA directory' })
          .option('out', { type: 'string', describe: 'also write it here' })
          .option('der', {
            type: 'boolean',
            default: false,
            describe: 'write --out as DER (as served over HTTP)',
          })
          .option('lifetime', {
            type: 'number',
            describe: 'seconds until nextUpdate (default 600 local, 7 days root)',
          })
          .example('$0 ca crl --ca /var/lib/distnat/router/ca', 'a CRL valid ten minutes')
          .example('$0 ca crl --ca root --out root.crl --der --lifetime 2592000', "the root's, for a month"),
      (argv) =>
        guard(async () => {
          const ca = await CertificateAuthority.open(argv.ca);
          const crl = await ca.makeCrl(argv.lifetime ?? defaultLifetime(ca));
          if (argv.out !== undefined)
            writeFileAtomic(argv.out, argv.der ? Buffer.from(crl.rawData) : crlToPem(crl));
          out(`wrote ${join(argv.ca, 'crl.pem')}${argv.out === undefined ? '' : ` and ${argv.out}`}\n`);
          out(describeCrl(crl));
        }),
    );
}
