/**
 * Where an SA's cryptography runs: the addon's OpenSSL contexts kept per SA
 * (native-gcm.ts, native-cbc.ts, hmac.ts) or node:crypto, the reference.
 * An explicit choice wins; otherwise native when the addon has the context,
 * unless the environment sets DISTNAT_ESP_CRYPTO=node (for comparison, and
 * to rule the addon out when chasing a fault).
 */
export type CryptoImplementation = 'native' | 'node';

export function useNative(
  implementation: CryptoImplementation | undefined,
  available: () => boolean,
): boolean {
  if (implementation !== undefined) return implementation === 'native';
  return process.env.DISTNAT_ESP_CRYPTO !== 'node' && available();
}
