/**
 * `distnat ca issue-host` and `distnat ca request`: host certificates, signed
 * offline for given blocks, or asked of the router for the blocks it leased.
 */
import { existsSync } from 'node:fs';
import type { Argv } from 'yargs';
import type { Lease } from '../../pap/lease.ts';
import {
  caAddresses,
  CertificateAuthority,
  KEY_TYPES,
  LocalCa,
  createCertificateRequest,
  describeCertificate,
  generateSigningKey,
  loadSigningKey,
  requestHostCertificate,
  type KeyType,
} from '../../pki/index.ts';
import { KEY_MODE, writeFileAtomic, writeNewFile } from '../../pki/files.ts';
import { portSlot } from '../../util/block.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import { ipv4Flags } from '../usage.ts';
import { guard, out, parseRanges, readInput } from './ca-common.ts';

export function hostCertificateCommands(y: Argv) {
  return y
    .command(
      'issue-host',
      'sign a host certificate offline for given blocks (tests and demos; the router issues from live leases)',
      (b) =>
        b
          .option('ca', { type: 'string', demandOption: true, describe: 'local CA directory' })
          .option('csr', {
            type: 'string',
            demandOption: true,
            describe: "the host's PKCS #10 request (PEM or DER)",
          })
          .option('host', {
            type: 'string',
            default: '10.0.0.1',
            describe: "the host's LAN address, for the registry",
          })
          .option('ports', {
            type: 'string',
            demandOption: true,
            describe: 'port blocks, e.g. 1026-1057 or 1026+32,2048+32',
          })
          .option('spis', { type: 'string', default: '', describe: 'SPI blocks, e.g. 256-319' })
          .option('shared-address', {
            type: 'string',
            describe: "the address the ports are on, one of the local CA's (default its first)",
          })
          .check(ipv4Flags('shared-address'))
          .option('lease-seconds', {
            type: 'number',
            default: 300,
            describe: 'the lease the certificate stands for',
          })
          .option('out', {
            type: 'string',
            describe: 'write the chain (host, local CA, root) here instead of stdout',
          })
          .example('$0 ca issue-host --ca ca --csr h1.csr --ports 1026-1057 --spis 256-319 --out h1.pem', ''),
      (argv) =>
        guard(async () => {
          const authority = await CertificateAuthority.open(argv.ca);
          const addresses = caAddresses(authority.settings);
          const ca = new LocalCa(authority, { routerAddresses: addresses });
          const address = argv['shared-address'] ?? addresses[0];
          const index = addresses.indexOf(address ?? '');
          if (index < 0)
            throw new UserError(
              `--shared-address: ${address} is not an address of this local CA (${addresses.join(', ')})`,
              ExitCode.USAGE,
            );
          const now = Date.now();
          const toLease =
            (kind: 'port' | 'spi') =>
            (r: { lowest: number; count: number }): Lease => ({
              kind,
              host: argv.host,
              ...r,
              // The CA takes port blocks as the router leases them: slots of its addresses (util/block.ts).
              lowest: kind === 'port' ? portSlot(index, r.lowest) : r.lowest,
              grantedAt: now,
              expiresAt: now + argv['lease-seconds'] * 1000,
              leaseSeconds: argv['lease-seconds'],
            });
          const leases = [
            ...parseRanges(argv.ports, '--ports').map(toLease('port')),
            ...parseRanges(argv.spis, '--spis').map(toLease('spi')),
          ];
          const r = await ca.issue(readInput(argv.csr, 'request'), { host: argv.host, leases });
          if (!r.ok) throw new UserError(`not issued: ${r.reason}: ${r.detail}`);
          if (argv.out !== undefined) {
            writeFileAtomic(argv.out, r.chainPem);
            out(`wrote ${argv.out}`);
          } else out(r.chainPem);
          process.stderr.write(describeCertificate(r.certificate) + '\n');
        }),
    )
    .command(
      'request',
      "a host's side: make a key (if needed) and a request, and get a certificate from the router",
      (b) =>
        b
          .option('router', {
            type: 'string',
            default: 'http://10.0.0.7:7033',
            describe: "the router's certificate endpoint",
          })
          .option('key', {
            type: 'string',
            demandOption: true,
            describe: 'private key file; created (0600) if missing',
          })
          .option('key-type', {
            choices: KEY_TYPES,
            default: 'ec-p256' as KeyType,
            describe: 'for a new key',
          })
          .option('out', {
            type: 'string',
            demandOption: true,
            describe: 'where to write the certificate chain',
          })
          .option('csr-only', {
            type: 'boolean',
            default: false,
            describe: 'write the request to --out and stop',
          })
          .option('shared-address', {
            type: 'string',
            describe:
              'the shared address this host leases on (its sharedAddress), for a router with several; ' +
              'default: the one the router finds the host leasing on',
          })
          .check(ipv4Flags('shared-address'))
          .example(
            '$0 ca request --key /var/lib/distnat/host/host.key --out /var/lib/distnat/host/host.pem',
            '',
          )
          .example(
            '$0 ca request --key host.key --out host.pem --shared-address 198.51.100.31',
            "a host on a router's second shared address",
          ),
      (argv) =>
        guard(async () => {
          let key;
          if (existsSync(argv.key)) key = await loadSigningKey(readInput(argv.key, 'key').toString('utf8'));
          else {
            const made = await generateSigningKey(argv['key-type']);
            writeNewFile(argv.key, made.pem, KEY_MODE);
            key = made.key;
            process.stderr.write(`new ${key.description.text} key in ${argv.key}\n`);
          }
          const csr = await createCertificateRequest(key, undefined, argv['shared-address']);
          if (argv['csr-only']) {
            writeFileAtomic(argv.out, csr.toString('pem') + '\n');
            out(`wrote ${argv.out}`);
            return;
          }
          const got = await requestHostCertificate(argv.router, csr);
          writeFileAtomic(argv.out, got.pem);
          out(`wrote ${argv.out}\n`);
          out(describeCertificate(got.certificate));
        }),
    );
}
