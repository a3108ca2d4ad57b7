// @peculiar/x509 resolves its services through tsyringe, which needs the
// Reflect metadata API loaded before the library's first import. Every pki
// module imports the library through this file so that order always holds.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';

// The project builds without the DOM library, so WebCrypto's types come from Node.
export type CryptoKey = webcrypto.CryptoKey;
export type EcdsaParams = webcrypto.EcdsaParams;
export type EcKeyImportParams = webcrypto.EcKeyImportParams;
export type RsaHashedImportParams = webcrypto.RsaHashedImportParams;

// Node's WebCrypto signs ECDSA P-256 and RSA PKCS #1 v1.5 with SHA-256 through
// OpenSSL: the same code that later checks the certificates in strongSwan tests.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };
export const subtle = webcrypto.subtle;
