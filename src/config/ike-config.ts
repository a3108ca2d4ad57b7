import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { ipv4Address, port } from './fields.ts';
import { readConfigFile, validateConfig } from './load.ts';
import { withRules, type Rule } from './rules.ts';

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

const IkeFields = z
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
    peers: z.array(ikePeer).default([]),
  })
  .strict();

export type IkeConfig = z.infer<typeof IkeFields>;
export type IkePeerConfig = IkeConfig['peers'][number];

const CERTIFICATE_PEM = /-----BEGIN CERTIFICATE-----/;
const PRIVATE_KEY_PEM = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/**
 * Why a PEM file the IKE file names will not do, or undefined. Reading is
 * all it does: paths are relative to the working directory, as they are
 * when the daemon reads them.
 */
function pemProblem(file: string, kind: RegExp, what: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'latin1');
  } catch (e) {
    return `expected a readable file of ${what}: ${(e as Error).message}`;
  }
  return kind.test(text) ? undefined : `expected a file of ${what}, found none in ${file}`;
}

const IKE_RULES: readonly Rule<IkeConfig>[] = [
  function trustFilesHoldCertificates(c, report) {
    c.trust?.forEach((file, i) => {
      if (file === undefined) return;
      const problem = pemProblem(file, CERTIFICATE_PEM, 'PEM certificates (-----BEGIN CERTIFICATE-----)');
      if (problem !== undefined) report(['trust', i], problem);
    });
  },
  function certificateFileHoldsOne(c, report) {
    if (c.certificate === undefined) return;
    const problem = pemProblem(
      c.certificate,
      CERTIFICATE_PEM,
      'PEM certificates (-----BEGIN CERTIFICATE-----)',
    );
    if (problem !== undefined) report(['certificate'], problem);
  },
  function keyOfTheCertificate(c, report) {
    if (c.certificate !== undefined && c.key === undefined) {
      report(['key'], 'expected the private key of `certificate`: a certificate is of no use without it');
      return;
    }
    // A host makes its key where `key` says when the file is missing; one that exists must be a key.
    if (c.key === undefined || (c.certificate === undefined && !existsSync(c.key))) return;
    const problem = pemProblem(c.key, PRIVATE_KEY_PEM, 'a PEM private key (-----BEGIN PRIVATE KEY-----)');
    if (problem !== undefined) report(['key'], problem);
  },
  function certificateUrlIsHttp(c, report) {
    const url = c.certificateUrl;
    if (url !== undefined && !/^https?:$/.test(new URL(url).protocol))
      report(
        ['certificateUrl'],
        "expected an http: or https: URL, such as the router's http://10.0.0.7:7033",
      );
  },
  function cookiesBeforeTheLimit(c, report) {
    const threshold = c.cookieThreshold;
    const limit = c.halfOpenLimit;
    if (threshold !== undefined && limit !== undefined && threshold > limit)
      report(
        ['cookieThreshold'],
        `expected at most halfOpenLimit (${limit}): past the limit IKE_SA_INIT is dropped, so cookies ` +
          'would never be asked for',
      );
  },
  function eachPeerOnce(c, report) {
    const seen = new Map<string, number>();
    c.peers?.forEach((p, i) => {
      if (p?.address === undefined || p.port === undefined) return;
      const at = `${p.address}:${p.port}`;
      const first = seen.get(at);
      if (first !== undefined)
        report(['peers', i], `expected each peer once: peers.${first} is ${at} already`);
      else seen.set(at, i);
    });
  },
];

export const IkeConfigSchema = withRules(IkeFields, IKE_RULES);

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
