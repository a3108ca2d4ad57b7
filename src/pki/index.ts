/**
 * Public face of the router's certificate authority (patent FIG. 22-25,
 * claims 14-39). docs/pki.md describes the hierarchy, the profiles and the
 * CSR and CRL channels.
 */
export {
  BACKDATE_MS,
  CA_FILES,
  CaError,
  caAddresses,
  CertificateAuthority,
  defaultCrlUrl,
} from './authority.ts';
export type { CaSettings, LocalCaIssueOptions, RecordDetails, RootCaOptions } from './authority.ts';
export { CertificateRequestError, createCertificateRequest, requestHostCertificate } from './client.ts';
export type { IssuedChain } from './client.ts';
export { crlUrls, describeCertificate, describeCrl, describeRequest } from './describe.ts';
export { PKI_HTTP_PORT, peerAddress, pkiRequestHandler, startPkiServer } from './http.ts';
export type { LeaseLookup, PkiHttpOptions } from './http.ts';
export {
  KEY_TYPES,
  KeyPolicyError,
  describeKey,
  describePublicKey,
  generateSigningKey,
  loadSigningKey,
} from './keys.ts';
export type { KeyDescription, KeyType, SigningAlgorithm, SigningKey } from './keys.ts';
export { LocalCa, requestedAddress } from './local-ca.ts';
export type { HostLeaseInfo, IssueRefusal, IssueResult, LocalCaOptions } from './local-ca.ts';
export { crlToPem, pemType, readCertificates, readCrl, toPem } from './pem.ts';
export {
  PORT_BINDING_OID,
  decodePortBinding,
  encodePortBinding,
  formatRanges,
  portsCoveredBy,
  rangesCover,
  readPortBinding,
} from './port-binding.ts';
export type { PortBinding, ReadBinding } from './port-binding.ts';
export { CertificateRegistry, REVOCATION_REASONS, RegistryError } from './registry.ts';
export type { IssuedCertificate, RevocationReason, RevokeOutcome } from './registry.ts';
export { SharedRevocationList } from './shared-revocations.ts';
export type { RevocationRecord, RevocationSkipReason } from './shared-revocations.ts';
export { verifyHostCertificate } from './verify.ts';
export type {
  CertificateInput,
  CoverageClaim,
  HostCertificateProblem,
  HostCertificateVerdict,
  TrustChain,
} from './verify.ts';
export { x509 } from './x509.ts';
export { issuePeerCertificate } from './peer-certificate.ts';
export type { IssuedPeer, PeerCertificateOptions } from './peer-certificate.ts';
