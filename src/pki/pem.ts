import { x509 } from './x509.ts';

/** Certificates from PEM text (any number, other blocks ignored) or from one DER certificate. */
export function readCertificates(data: string | Uint8Array): x509.X509Certificate[] {
  const text = typeof data === 'string' ? data : Buffer.from(data).toString('latin1');
  if (text.includes('-----BEGIN')) {
    return x509.PemConverter.decodeWithHeaders(text)
      .filter((b) => b.type === 'CERTIFICATE')
      .map((b) => new x509.X509Certificate(b.rawData));
  }
  return [new x509.X509Certificate(Buffer.from(data as Uint8Array))];
}

/** The kind of the first PEM block, or 'der' for binary data. */
export function pemType(data: string | Uint8Array): string {
  const text = typeof data === 'string' ? data : Buffer.from(data).toString('latin1');
  const m = /-----BEGIN ([A-Z0-9 ]+)-----/.exec(text);
  return m?.[1] ?? 'der';
}

export const toPem = (items: readonly { toString(format: 'pem'): string }[]): string =>
  items.map((c) => c.toString('pem')).join('\n') + '\n';

/** PEM of a CRL under the label RFC 7468 section 5 and openssl use ("X509 CRL", not the library's "CRL"). */
export const crlToPem = (crl: x509.X509Crl): string =>
  x509.PemConverter.encode(crl.rawData, 'X509 CRL') + '\n';

/** A CRL from PEM (either label) or DER. */
export function readCrl(data: string | Uint8Array): x509.X509Crl {
  const text = typeof data === 'string' ? data : Buffer.from(data).toString('latin1');
  if (text.includes('-----BEGIN')) return new x509.X509Crl(x509.PemConverter.decodeFirst(text));
  return new x509.X509Crl(Buffer.from(data as Uint8Array));
}
