import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv } from 'yargs';
import type { Lease } from '../../pap/lease.ts';
import {
  CaError,
  CertificateAuthority,
  CertificateRequestError,
  KEY_TYPES,
  KeyPolicyError,
  LocalCa,
  REVOCATION_REASONS,
  RegistryError,
  createCertificateRequest,
  crlToPem,
  describeCertificate,
  describeCrl,
  describeRequest,
  formatRanges,
  generateSigningKey,
  loadSigningKey,
  pemType,
  readCertificates,
  readCrl,
  requestHostCertificate,
  x509,
  type KeyType,
  type RevocationReason,
} from '../../pki/index.ts';
import { KEY_MODE, writeFileAtomic, writeNewFile } from '../../pki/files.ts';
import { ExitCode, UserError } from '../exit-codes.ts';
import { issuePeerCommand } from './ca-issue-peer.ts';

/**
 * `distnat ca ...`: the root CA (the patent's higher certificate authority),
 * the router's local CA, and the tools around them. docs/pki.md explains the
 * hierarchy and every field.
 */

const REASONS = Object.keys(REVOCATION_REASONS) as RevocationReason[];

/** CaError and friends become one line for the person at the terminal, with a sysexits code. */
async function guard<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (e instanceof UserError) throw e;
    if (e instanceof CaError) {
      const code = {
        exists: ExitCode.CANTCREATE,
        missing: ExitCode.USAGE,
        invalid: ExitCode.CONFIG,
        refused: ExitCode.FAILURE,
      }[e.kind];
      throw new UserError(e.message, code);
    }
    if (e instanceof RegistryError) throw new UserError(e.message, ExitCode.CONFIG);
    if (e instanceof KeyPolicyError) throw new UserError(e.message, ExitCode.FAILURE);
    if (e instanceof CertificateRequestError)
      throw new UserError(e.message, e.status === 0 ? ExitCode.UNAVAILABLE : ExitCode.FAILURE);
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') throw new UserError((e as Error).message, ExitCode.NOPERM);
    if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EROFS' || code === 'ENOSPC')
      throw new UserError((e as Error).message, ExitCode.CANTCREATE);
    throw e;
  }
}

function readInput(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UserError(`cannot read ${what} ${path}: ${(e as Error).message}`, ExitCode.USAGE);
  }
}

/** "1026-1057,2048-2079" or "1026+32" into blocks. */
export function parseRanges(text: string, what: string): { lowest: number; count: number }[] {
  return text
    .split(',')
    .filter((p) => p.trim() !== '')
    .map((part) => {
      const m = /^\s*(\d+)\s*(?:([-+])\s*(\d+))?\s*$/.exec(part);
      if (m === null)
        throw new UserError(`${what}: "${part}" is not a range like 1026-1057 or 1026+32`, ExitCode.USAGE);
      const lowest = Number(m[1]);
      const count = m[2] === undefined ? 1 : m[2] === '+' ? Number(m[3]) : Number(m[3]) - lowest + 1;
      if (count < 1) throw new UserError(`${what}: "${part}" is empty`, ExitCode.USAGE);
      return { lowest, count };
    })
    .sort((a, b) => a.lowest - b.lowest);
}

const out = (text: string): void => {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
};

export function caCommand(y: Argv) {
  return y.command('ca <command>', 'root CA, local CA and host certificates (the router as local CA)', (a) =>
    issuePeerCommand(a)
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
            out(
              `local CA created in ${argv.out}; its certificates name the CRL at ${local.settings.crlUrl}\n`,
            );
            out(describeCertificate(local.certificate));
          }),
      )
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
            .option('lease-seconds', {
              type: 'number',
              default: 300,
              describe: 'the lease the certificate stands for',
            })
            .option('out', {
              type: 'string',
              describe: 'write the chain (host, local CA, root) here instead of stdout',
            })
            .example(
              '$0 ca issue-host --ca ca --csr h1.csr --ports 1026-1057 --spis 256-319 --out h1.pem',
              '',
            ),
        (argv) =>
          guard(async () => {
            const ca = await LocalCa.open(argv.ca);
            const now = Date.now();
            const toLease =
              (kind: 'port' | 'spi') =>
              (r: { lowest: number; count: number }): Lease => ({
                kind,
                host: argv.host,
                ...r,
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
            .example(
              '$0 ca request --key /var/lib/distnat/host/host.key --out /var/lib/distnat/host/host.pem',
              '',
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
            const csr = await createCertificateRequest(key);
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
      )
      .command(
        'show <path>',
        'say in plain words what a certificate, CRL, request or CA directory binds',
        (b) =>
          b
            .positional('path', {
              type: 'string',
              demandOption: true,
              describe: 'PEM or DER file, or a CA directory',
            })
            .example('$0 ca show h1.pem', 'which address, ports and SPIs the key owns, until when')
            .example('$0 ca show /var/lib/distnat/router/ca', 'the local CA and every certificate it issued'),
        (argv) => guard(async () => out(await show(argv.path))),
      )
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
            .example(
              '$0 ca revoke --ca root --cert ca/ca.pem --reason cACompromise',
              'revoke a whole router',
            ),
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
            out(
              outcome === 'revoked' ? `revoked ${serial} (${argv.reason})` : `${serial} was already revoked`,
            );
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
            .example(
              '$0 ca crl --ca root --out root.crl --der --lifetime 2592000',
              "the root's, for a month",
            ),
        (argv) =>
          guard(async () => {
            const ca = await CertificateAuthority.open(argv.ca);
            const crl = await ca.makeCrl(argv.lifetime ?? defaultLifetime(ca));
            if (argv.out !== undefined)
              writeFileAtomic(argv.out, argv.der ? Buffer.from(crl.rawData) : crlToPem(crl));
            out(`wrote ${join(argv.ca, 'crl.pem')}${argv.out === undefined ? '' : ` and ${argv.out}`}\n`);
            out(describeCrl(crl));
          }),
      )
      .demandCommand(1, 'Name a ca command: init, issue-local, issue-host, request, show, revoke or crl.')
      .example(
        '$0 ca init --dir root',
        'then: distnat ca issue-local --shared-address 198.51.100.30 --root root --out ca',
      ),
  );
}

const defaultLifetime = (ca: CertificateAuthority): number =>
  ca.settings.role === 'root' ? 7 * 86_400 : 600;

async function show(path: string): Promise<string> {
  let isDir = false;
  try {
    isDir = statSync(path).isDirectory();
  } catch (e) {
    throw new UserError(`cannot read ${path}: ${(e as Error).message}`, ExitCode.USAGE);
  }
  if (isDir) return showAuthority(path);
  const data = readInput(path, 'file');
  const type = pemType(data);
  try {
    if (type === 'X509 CRL' || type === 'CRL') return describeCrl(readCrl(data));
    if (type === 'CERTIFICATE REQUEST' || type === 'NEW CERTIFICATE REQUEST')
      return describeRequest(new x509.Pkcs10CertificateRequest(data.toString('utf8')));
    if (type === 'CERTIFICATE')
      return readCertificates(data)
        .map((c) => describeCertificate(c))
        .join('\n\n');
    if (type !== 'der') throw new UserError(`${path} holds a ${type}, not a certificate, CRL or request`);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${path}: unreadable ${type}: ${(e as Error).message}`);
  }
  // DER: try each kind in turn.
  for (const attempt of [
    () => describeCertificate(new x509.X509Certificate(data)),
    () => describeCrl(new x509.X509Crl(data)),
  ])
    try {
      return attempt();
    } catch {
      // next kind
    }
  try {
    return await describeRequest(new x509.Pkcs10CertificateRequest(data));
  } catch {
    throw new UserError(`${path} is not a certificate, CRL or certificate request`);
  }
}

async function showAuthority(dir: string): Promise<string> {
  const ca = await CertificateAuthority.open(dir);
  const now = Date.now();
  const lines = [describeCertificate(ca.certificate), ''];
  const issued = ca.registry.list().sort((a, b) => a.notBefore - b.notBefore);
  lines.push(issued.length === 0 ? 'issued nothing yet' : `issued ${issued.length} certificate(s):`);
  for (const e of issued) {
    const state =
      e.revoked !== undefined ? `revoked (${e.revoked.reason})` : e.notAfter <= now ? 'expired' : 'valid';
    const what =
      e.role === 'local-ca'
        ? `local CA for ${e.address}`
        : e.role === 'peer'
          ? `IKE peer ${e.address}`
          : `${e.host ?? '?'}: ports ${formatRanges(e.ports)}${e.spis.length > 0 ? `, SPIs ${formatRanges(e.spis)}` : ''}`;
    lines.push(`  ${e.serial}  ${state.padEnd(30)}  until ${new Date(e.notAfter).toISOString()}  ${what}`);
  }
  const crl = ca.lastCrl();
  if (crl !== undefined) lines.push('', describeCrl(crl));
  return lines.join('\n');
}
