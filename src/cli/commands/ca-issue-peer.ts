import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv } from 'yargs';
import {
  CaError,
  CertificateAuthority,
  KEY_TYPES,
  describeCertificate,
  issuePeerCertificate,
} from '../../pki/index.ts';
import { KEY_MODE, writeFileAtomic, writeNewFile } from '../../pki/files.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import { ipv4Flags } from '../usage.ts';

/**
 * `distnat ca issue-peer`: the root certifies an IKE peer with an address of
 * its own (the server running `distnat peer --ike`, or strongSwan), writing
 * key.pem and cert.pem (the certificate, then the root) into a directory.
 */
export function issuePeerCommand(y: Argv) {
  return y.command(
    'issue-peer',
    'certify an IKE peer with its own address (a server) with the root: key and certificate into a directory',
    (b) =>
      b
        .option('root', {
          type: 'string',
          demandOption: true,
          describe: 'root CA directory (from `ca init`)',
        })
        .option('address', { type: 'string', demandOption: true, describe: "the peer's IPv4 address" })
        .option('out', { type: 'string', demandOption: true, describe: 'directory for key.pem and cert.pem' })
        .option('key-type', { choices: KEY_TYPES, default: 'ec-p256' as const, describe: 'key algorithm' })
        .option('days', { type: 'number', default: 365, describe: 'validity (never past the root)' })
        .check(ipv4Flags('address'))
        .example(
          '$0 ca issue-peer --root root --address 203.0.113.3 --out server',
          'then: distnat peer --ike FILE with certificate: server/cert.pem and key: server/key.pem',
        ),
    async (argv) => {
      try {
        const root = await CertificateAuthority.open(argv.root);
        const issued = await issuePeerCertificate(root, {
          address: argv.address,
          days: argv.days,
          keyType: argv['key-type'],
        });
        mkdirSync(argv.out, { recursive: true, mode: 0o700 });
        writeNewFile(join(argv.out, 'key.pem'), issued.keyPem, KEY_MODE);
        writeFileAtomic(join(argv.out, 'cert.pem'), issued.chainPem);
        process.stdout.write(`wrote ${join(argv.out, 'key.pem')} and ${join(argv.out, 'cert.pem')}\n`);
        process.stderr.write(describeCertificate(issued.certificate) + '\n');
      } catch (e) {
        if (e instanceof CaError)
          throw new UserError(e.message, e.kind === 'invalid' ? ExitCode.CONFIG : ExitCode.FAILURE);
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EEXIST' || code === 'ENOENT')
          throw new UserError((e as Error).message, ExitCode.CANTCREATE);
        throw e;
      }
    },
  );
}
