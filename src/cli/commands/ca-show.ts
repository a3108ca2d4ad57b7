/** `distnat ca show`: what a certificate, CRL, request or CA directory binds, in plain words. */
import { statSync } from 'node:fs';
import type { Argv } from 'yargs';
import {
  CertificateAuthority,
  describeCertificate,
  describeCrl,
  describeRequest,
  formatRanges,
  pemType,
  readCertificates,
  readCrl,
  x509,
} from '../../pki/index.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import { guard, out, readInput } from './ca-common.ts';

export function showCommand(y: Argv) {
  return y.command(
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
  );
}

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
