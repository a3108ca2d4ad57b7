/**
 * `distnat ca init` and `distnat ca issue-local`: the root CA (the patent's
 * higher certificate authority) and a router's local CA under it.
 */
import { join } from 'node:path';
import type { Argv } from 'yargs';
import { CertificateAuthority, KEY_TYPES, describeCertificate, type KeyType } from '../../pki/index.ts';
import { guard, out } from './ca-common.ts';

export function createCaCommands(y: Argv) {
  return y
    .command(
      'init',
      'create the root CA: a key and a self-signed certificate in a directory',
      (b) =>
        b
          .option('dir', {
            type: 'string',
            demandOption: true,
            describe: 'directory to create the root CA in',
          })
          .option('key-type', {
            choices: KEY_TYPES,
            default: 'ec-p256' as KeyType,
            describe: 'key algorithm',
          })
          .option('org', {
            type: 'string',
            default: 'distnat',
            describe: 'organization (O) of every name below',
          })
          .option('name', { type: 'string', describe: 'common name of the root (default "<org> root CA")' })
          .option('days', { type: 'number', default: 3650, describe: 'validity of the root certificate' })
          .option('crl-url', {
            type: 'string',
            describe: "where the root's CRL will be published (written into the local CA certificates)",
          })
          .example('$0 ca init --dir /etc/distnat/root', 'ECDSA P-256 root valid ten years')
          .example(
            '$0 ca init --dir root --key-type rsa-3072 --org example',
            'an RSA root for organization "example"',
          ),
      (argv) =>
        guard(async () => {
          const root = await CertificateAuthority.initRoot(argv.dir, {
            keyType: argv['key-type'],
            organization: argv.org,
            commonName: argv.name,
            days: argv.days,
            crlUrl: argv['crl-url'],
          });
          out(`root CA created in ${argv.dir} (key ${join(argv.dir, 'ca.key')}, mode 0600)\n`);
          out(describeCertificate(root.certificate));
        }),
    )
    .command(
      'issue-local',
      "create a router's local CA, signed by the root and constrained to the shared address",
      (b) =>
        b
          .option('shared-address', {
            type: 'string',
            demandOption: true,
            describe: 'the public IPv4 address the hosts share',
          })
          .option('root', {
            type: 'string',
            demandOption: true,
            describe: 'root CA directory (from `ca init`)',
          })
          .option('out', {
            type: 'string',
            demandOption: true,
            describe: 'directory to create the local CA in',
          })
          .option('key-type', { choices: KEY_TYPES, default: 'ec-p256' as KeyType })
          .option('days', { type: 'number', default: 365, describe: 'validity (never past the root)' })
          .option('crl-url', {
            type: 'string',
            describe: 'where the router serves its CRL (default http://<shared address>/distnat/crl)',
          })
          .example(
            '$0 ca issue-local --shared-address 198.51.100.30 --root root --out /var/lib/distnat/router/ca',
            'the testbed router',
          ),
      (argv) =>
        guard(async () => {
          const root = await CertificateAuthority.open(argv.root);
          const local = await root.issueLocalCa(argv.out, {
            sharedAddress: argv['shared-address'],
            keyType: argv['key-type'],
            days: argv.days,
            crlUrl: argv['crl-url'],
          });
          out(`local CA created in ${argv.out}; its certificates name the CRL at ${local.settings.crlUrl}\n`);
          out(describeCertificate(local.certificate));
        }),
    );
}
