/**
 * Manual keying files for the IPsec namespace test and the IPsec bench:
 * each host has its own SAs to the server, one policy per server port:
 *
 *   port  suite
 *   base+1  ESP transport, AES-GCM-128
 *   base+2  ESP tunnel, AES-CBC-128 + HMAC-SHA-256-128
 *   base+3  AH transport, HMAC-SHA-256-128
 *   iperf   ESP transport, AES-GCM-128
 *
 * Inbound SPIs come from the block the router leases the host (h1 asks
 * first: 256-319, h2 second: 320-383); outbound SPIs are the server's
 * choice and only have to differ between the hosts. Keys are fixed so the
 * test can give them to tshark.
 */
import { writeFileSync } from 'node:fs';
import { TOPOLOGY } from '../../scripts/lib/topology.ts';

/** The testbed's shared address and server, the ends of every SA here. */
export const SHARED = TOPOLOGY.shared;
export const SERVER = TOPOLOGY.server.wan;

export interface HostKeys {
  /** First inbound SPI (the host's leased SPI block). */
  inSpi: number;
  /** First outbound SPI. */
  outSpi: number;
  /** Server ports base+1, base+2, base+3. */
  base: number;
  iperf: number;
  /** Varies the keys per host. */
  seed: number;
}

export const H1_KEYS: HostKeys = { inSpi: 0x100, outSpi: 0x9000, base: 8080, iperf: 5201, seed: 1 };
export const H2_KEYS: HostKeys = { inSpi: 0x140, outSpi: 0xa000, base: 9080, iperf: 5202, seed: 2 };

const hex = (byte: number, n: number): string => '0x' + byte.toString(16).padStart(2, '0').repeat(n);

export interface EspKey {
  spi: number;
  src: string;
  dst: string;
  /** tshark esp_sa UAT fields. */
  encryption: 'gcm' | 'cbc';
  encKey: string;
  authKey: string;
}

/** The YAML text, and the ESP SAs as tshark needs them. */
export function hostKeying(k: HostKeys): { yaml: string; esp: EspKey[] } {
  const policies: string[] = [];
  const sas: string[] = [];
  const esp: EspKey[] = [];
  const kinds = [
    { name: 'gcm', port: k.base + 1, kind: 'gcm' },
    { name: 'cbc-tunnel', port: k.base + 2, kind: 'cbc' },
    { name: 'ah', port: k.base + 3, kind: 'ah' },
    { name: 'iperf', port: k.iperf, kind: 'gcm' },
  ] as const;
  kinds.forEach((p, i) => {
    policies.push(
      `  - { name: ${p.name}, local: ${SHARED}, remote: ${SERVER}, protocol: tcp, remotePort: ${p.port}, ` +
        `action: protect, protect: [${p.kind === 'ah' ? 'ah' : 'esp'}] }`,
    );
    for (const dir of ['outbound', 'inbound'] as const) {
      const spi = (dir === 'outbound' ? k.outSpi : k.inSpi) + i;
      const [src, dst] = dir === 'outbound' ? [SHARED, SERVER] : [SERVER, SHARED];
      const b = k.seed * 16 + i * 2 + (dir === 'outbound' ? 0 : 1);
      let body: string;
      if (p.kind === 'gcm') {
        const key = hex(b, 20);
        body = `protocol: esp, encryption: { algorithm: aes-gcm-16, key: "${key}" }`;
        esp.push({ spi, src, dst, encryption: 'gcm', encKey: key, authKey: '' });
      } else if (p.kind === 'cbc') {
        const key = hex(b, 16);
        const auth = hex(b + 0x80, 32);
        body =
          `protocol: esp, mode: tunnel, src: ${src}, dst: ${dst}, ` +
          `encryption: { algorithm: aes-cbc, key: "${key}" }, integrity: { algorithm: hmac-sha256-128, key: "${auth}" }`;
        esp.push({ spi, src, dst, encryption: 'cbc', encKey: key, authKey: auth });
      } else {
        body = `protocol: ah, integrity: { algorithm: hmac-sha256-128, key: "${hex(b + 0x80, 32)}" }`;
      }
      sas.push(`  - { name: ${p.name}-${dir}, spi: ${spi}, direction: ${dir}, policy: ${p.name}, ${body} }`);
    }
  });
  return { yaml: ['defaultAction: bypass', 'policies:', ...policies, 'sas:', ...sas, ''].join('\n'), esp };
}

/** tshark -o options decrypting and authenticating the given ESP SAs. */
export function tsharkEspOptions(sas: readonly EspKey[]): string[] {
  const uat = sas.map((s) =>
    s.encryption === 'gcm'
      ? `"IPv4","${s.src}","${s.dst}","0x${s.spi.toString(16).padStart(8, '0')}","AES-GCM with 16 octet ICV [RFC4106]","${s.encKey}","NULL",""`
      : `"IPv4","${s.src}","${s.dst}","0x${s.spi.toString(16).padStart(8, '0')}","AES-CBC [RFC3602]","${s.encKey}","HMAC-SHA-256-128 [RFC4868]","${s.authKey}"`,
  );
  return [
    '-o',
    'esp.enable_encryption_decode:TRUE',
    '-o',
    'esp.enable_authentication_check:TRUE',
    ...uat.flatMap((u) => ['-o', `uat:esp_sa:${u}`]),
  ];
}

export function writeKeying(path: string, k: HostKeys): EspKey[] {
  const { yaml, esp } = hostKeying(k);
  writeFileSync(path, yaml);
  return esp;
}
