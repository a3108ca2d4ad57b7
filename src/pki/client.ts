import type { SigningKey } from './keys.ts';
import { readCertificates } from './pem.ts';
import { x509 } from './x509.ts';

/**
 * The host's side of FIG. 22 step 310: make a key's certificate request and
 * send it to the router's endpoint (http.ts). The private key never leaves
 * the host.
 */

/**
 * A PKCS #10 request signed with the key; the subject is a courtesy, the
 * router writes its own. `sharedAddress`, the address the host's stack
 * uses, goes in as the requested subjectAltName: a router with several
 * shared addresses certifies the host's ports on that one.
 */
export function createCertificateRequest(
  key: SigningKey,
  commonName = 'distnat host',
  sharedAddress?: string,
): Promise<x509.Pkcs10CertificateRequest> {
  return x509.Pkcs10CertificateRequestGenerator.create({
    name: new x509.Name([{ CN: [commonName] }]),
    keys: { privateKey: key.privateKey, publicKey: key.publicKey },
    signingAlgorithm: key.algorithm,
    extensions:
      sharedAddress === undefined
        ? []
        : [new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: sharedAddress }], false)],
  });
}

export class CertificateRequestError extends Error {
  override readonly name = 'CertificateRequestError';
  constructor(
    message: string,
    /** HTTP status, or 0 when the router could not be reached. */
    readonly status: number,
  ) {
    super(message);
  }
}

export interface IssuedChain {
  readonly certificate: x509.X509Certificate;
  /** The CA certificates that came with it, local CA first. */
  readonly chain: readonly x509.X509Certificate[];
  readonly pem: string;
}

/**
 * POSTs the request to `<base>/csr` (base e.g. http://10.0.0.7:7033) and
 * checks that the answer certifies this very key before returning it.
 */
export async function requestHostCertificate(
  base: string,
  csr: x509.Pkcs10CertificateRequest,
  timeoutMs = 10_000,
): Promise<IssuedChain> {
  let res: Response;
  try {
    res = await fetch(new URL('/csr', base), {
      method: 'POST',
      headers: { 'content-type': 'application/pkcs10' },
      body: Buffer.from(csr.rawData),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    throw new CertificateRequestError(`cannot reach ${base}: ${(e as Error).message}`, 0);
  }
  const body = await res.text();
  if (res.status !== 200 && res.status !== 201)
    throw new CertificateRequestError(`${base} answered ${res.status}: ${body.trim()}`, res.status);
  const [certificate, ...chain] = readCertificates(body);
  if (certificate === undefined)
    throw new CertificateRequestError(`${base} answered without a certificate`, res.status);
  if (!Buffer.from(certificate.publicKey.rawData).equals(Buffer.from(csr.publicKey.rawData)))
    throw new CertificateRequestError(`${base} answered with a certificate for another key`, res.status);
  return { certificate, chain, pem: body };
}
