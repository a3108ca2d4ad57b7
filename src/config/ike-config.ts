import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ipv4Address, port } from './fields.ts';
import { readConfigFile, validateConfig } from './load.ts';

/**
 * The IKE file of `distnat host --ike FILE` and `distnat peer --ike FILE`
 * (docs/ike.md, "Running IKE"). Paths are files of PEM. A host gets its
 * certificate from the router's local CA, so it names a key only (made if
 * missing); a peer with an address of its own names its certificate chain
 * and key.
 *
 *   trust: [/etc/distnat/root.pem]
 *   peers:
 *     - { address: 203.0.113.3, initiate: true }
 */
const pemFile = z.string().min(1, 'expected the path of a PEM file');

const ikePeer = z
  .object({
    address: ipv4Address.describe("the other end's IKE address"),
    port: port.default(500).describe("the other end's IKE port"),
    initiate: z
      .boolean()
      .default(false)
      .describe('bring the SA up at start and again whenever it goes down; else wait for the other end'),
    mode: z.enum(['tunnel', 'transport']).default('tunnel'),
  })
  .strict();

export const IkeConfigSchema = z
  .object({
    trust: z.array(pemFile).min(1, 'expected at least one root CA certificate').describe('root CAs trusted'),
    key: pemFile.optional().describe('our private key (PKCS #8); a host makes one here if it is missing'),
    keyType: z.enum(['ec-p256', 'rsa-2048', 'rsa-3072']).default('ec-p256').describe('for a key made here'),
    certificate: pemFile
      .optional()
      .describe('our certificate, then its CA certificates (a peer); a host asks the router for one'),
    certificateUrl: z
      .url('expected a URL such as http://10.0.0.7:7033')
      .optional()
      .describe("the router's certificate endpoint (a host); default http://<router>:7033"),
    port: port.optional().describe('IKE port: a peer defaults to 500; a host takes one of its leased ports'),
    nattPort: port.optional().describe('NAT-T port: a peer defaults to 4500; a host uses its IKE port'),
    proposals: z
      .object({
        ike: z.array(z.string().min(1)).min(1).optional(),
        esp: z.array(z.string().min(1)).min(1).optional(),
      })
      .strict()
      .prefault({}),
    dpdSeconds: z.number().min(0).default(30).describe('liveness check after this long unheard (0: off)'),
    rekeySeconds: z
      .object({
        ike: z.number().min(0).default(14_400),
        child: z.number().min(0).default(3600),
      })
      .strict()
      .prefault({}),
    childLifetime: z
      .object({
        rekeyBytes: z.number().int().positive().optional(),
        lifeBytes: z.number().int().positive().optional(),
        rekeyPackets: z.number().int().positive().optional(),
        lifePackets: z.number().int().positive().optional(),
      })
      .strict()
      .refine((l) => l.rekeyBytes === undefined || l.lifeBytes === undefined || l.rekeyBytes < l.lifeBytes, {
        message: 'rekeyBytes must be below lifeBytes',
      })
      .refine(
        (l) => l.rekeyPackets === undefined || l.lifePackets === undefined || l.rekeyPackets < l.lifePackets,
        { message: 'rekeyPackets must be below lifePackets' },
      )
      .prefault({})
      .describe(
        'data a child SA carries before it is rekeyed (rekey*) and before it stops (life*); default no limit',
      ),
    maintenanceRate: z
      .object({
        perSecond: z.number().min(0).default(50),
        burst: z.number().int().min(1).optional(),
      })
      .strict()
      .prefault({})
      .describe('rekeys and liveness checks started per second across all SAs (0: no limit), and the burst'),
    crlMaxAgeSeconds: z
      .number()
      .min(0)
      .default(30)
      .describe("fetch a certificate's CRL again when the copy held is older than this"),
    retrySeconds: z.number().positive().default(5).describe('first pause before initiating again'),
    cookieThreshold: z
      .number()
      .int()
      .min(0)
      .default(16)
      .describe('half-open SAs from which IKE_SA_INIT must return a cookie (RFC 7296 2.6); 0: always'),
    halfOpenLimit: z
      .number()
      .int()
      .min(1)
      .default(5000)
      .describe('half-open SAs beyond which IKE_SA_INIT is dropped, cookie or not'),
    rsaPss: z
      .boolean()
      .default(false)
      .describe('sign with RSASSA-PSS (RFC 7427) when our key is RSA; PSS from peers is always accepted'),
    fragmentation: z
      .boolean()
      .default(true)
      .describe(
        'IKE fragmentation (RFC 7383): offer it, and send messages too big for fragmentSize in fragments',
      ),
    fragmentSize: z
      .number()
      .int()
      .min(576)
      .max(65_535)
      .default(1280)
      .describe('the largest IP datagram an IKE message may take, IPv4 and UDP headers included'),
    peers: z.array(ikePeer).default([]),
  })
  .strict();

export type IkeConfig = z.infer<typeof IkeConfigSchema>;
export type IkePeerConfig = IkeConfig['peers'][number];

/** The text of a PEM file the IKE file names; an error names the field and the file. */
export function readPemFile(file: string, field: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${field}: cannot read ${file}: ${(e as Error).message}`);
  }
}

/** Reads and checks an IKE file; a ConfigError names each bad field. */
export function readIkeConfig(file: string): IkeConfig {
  return validateConfig(IkeConfigSchema, readConfigFile(file), file);
}
