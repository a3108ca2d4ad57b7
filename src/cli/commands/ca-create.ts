/**
 * `distnat ca init` and `distnat ca issue-local`: the root CA (the patent's
 * higher certificate authority) and a router's local CA under it.
 */
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import type { Argv } from 'yargs';
import {
  CertificateAuthority,
  KEY_TYPES,
  PKI_HTTP_PORT,
  describeCertificate,
  type KeyType,
} from '../../pki/index.ts';
import { ipv4Flags } from '../usage.ts';
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
      "create a router's local CA, signed by the root and constrained to the shared address(es)",
      (b) =>
        b
          .option('shared-address', {
            type: 'string',
            array: true,
            demandOption: true,
            describe:
              'the public IPv4 address the hosts share; a router with several (sharedAddresses) gives each, ' +
              'repeated or comma-separated, first first',
            coerce: (v: string[]) => v.flatMap((a) => a.split(',')).map((a) => a.trim()),
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
          .option('crl-address', {
            type: 'string',
            describe:
              "the router's WAN address, where it serves the CRL (router --crl-address): " +
              'certificates name http://<crl-address>:<ca-port>/crl',
          })
          .option('ca-port', {
            type: 'number',
            default: PKI_HTTP_PORT,
            describe: "the router's CA port (router --ca-port, pki.port), with --crl-address",
          })
          .option('crl-url', {
            type: 'string',
            describe:
              'the CRL URL to write into certificates, when something other than the router serves it',
          })
          // Required rather than guessed: the only address this command knows, the shared one, is where the
          // hosts' traffic goes, not the router's CA endpoint, and remote peers cannot reach the LAN address.
          .check((argv) => {
            if ((argv['crl-address'] === undefined) === (argv['crl-url'] === undefined))
              return (
                "give --crl-address with the router's WAN address (where `distnat router --crl-address` " +
                'serves the CRL), or --crl-url, but not both'
              );
            const port = argv['ca-port'];
            if (!Number.isInteger(port) || port < 1 || port > 65535)
              return `--ca-port: got ${port}; expected a TCP port, 1-65535`;
            return true;
          })
          .check(ipv4Flags('crl-address'))
          .check((argv) => {
            const bad = argv['shared-address'].filter((a) => !isIPv4(a));
            if (bad.length > 0)
              return `--shared-address: got ${bad.map((a) => JSON.stringify(a)).join(', ')}; expected IPv4 addresses such as 198.51.100.30`;
            if (new Set(argv['shared-address']).size !== argv['shared-address'].length)
              return `--shared-address: ${argv['shared-address'].join(', ')} names an address twice`;
            return true;
          })
          .example(
            '$0 ca issue-local --shared-address 198.51.100.30 --crl-address 203.0.113.1 --root root --out /var/lib/distnat/router/ca',
            'the testbed router: certificates name http://203.0.113.1:7033/crl, which the router serves when started with --crl-address 203.0.113.1',
          )
          .example(
            '$0 ca issue-local --shared-address 198.51.100.30,198.51.100.31 --crl-address 203.0.113.1 --root root --out ca',
            'one local CA for a router with two shared addresses: it certifies each host on the address it leases on',
          ),
      (argv) =>
        guard(async () => {
          const root = await CertificateAuthority.open(argv.root);
          const local = await root.issueLocalCa(argv.out, {
            sharedAddress: argv['shared-address'],
            keyType: argv['key-type'],
            days: argv.days,
            crlUrl: argv['crl-url'] ?? `http://${argv['crl-address']}:${argv['ca-port']}/crl`,
          });
          out(`local CA created in ${argv.out}; its certificates name the CRL at ${local.settings.crlUrl}\n`);
          out(describeCertificate(local.certificate));
        }),
    );
}
