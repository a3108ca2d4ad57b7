import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { HeldLease, IssueRefusal, LocalCa } from './local-ca.ts';

/**
 * The router's certificate endpoint (docs/pki.md, "The CSR channel"). On the
 * LAN address only:
 *
 *   POST /csr   body: a PKCS #10 request, PEM or DER. 201 (new) or 200 (the
 *               same certificate again) with the chain as
 *               application/pem-certificate-chain; 403 for an address
 *               holding no port lease (on the shared address asked for)
 *               or a shared address the local CA does not certify; 400,
 *               413 or 503 otherwise.
 *   GET  /ca    the local CA and root certificates (PEM).
 *   GET  /crl   the current CRL, DER, application/pkix-crl; also served at
 *               the path of the CRL URL written into the certificates.
 *
 * The requester is whoever the TCP connection comes from: a host can get a
 * certificate only for the blocks its own LAN address leased, and the
 * handshake makes a blind spoofed source useless. It is no stronger than PAP
 * itself, which trusts the same source address.
 */
export const PKI_HTTP_PORT = 7033;

/** Where the issuer finds a host's leases: the router's LeaseTable has exactly this method. */
export interface LeaseLookup {
  leasesOf(host: string): readonly HeldLease[];
}

export interface PkiHttpOptions {
  readonly ca: LocalCa;
  readonly leases: LeaseLookup;
  /** False for a listener that only publishes the CRL (e.g. one on the WAN side). Default true. */
  readonly acceptCsr?: boolean;
  /** Largest request body accepted. Default 16 KiB, several times an RSA 4096 CSR. */
  readonly maxCsrBytes?: number;
  /** Wall clock for the lease check; default Date.now. */
  readonly now?: () => number;
  /** One line per issued, refused or failed request. */
  readonly log?: (line: string) => void;
}

const STATUS_OF: Readonly<Record<IssueRefusal, number>> = {
  'malformed-csr': 400,
  'bad-signature': 400,
  'key-not-allowed': 400,
  'no-lease': 403,
  // The host asked for an address the router does not serve, or one its local CA was not made for.
  'unknown-address': 400,
  'address-not-certified': 403,
  'ca-expired': 503,
};

/** An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d; the lease table knows a.b.c.d. */
export const peerAddress = (req: IncomingMessage): string =>
  (req.socket.remoteAddress ?? '').replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');

export function pkiRequestHandler(o: PkiHttpOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const maxBytes = o.maxCsrBytes ?? 16 * 1024;
  const now = o.now ?? Date.now;
  const log = o.log ?? (() => {});
  let crlPath: string | undefined;
  try {
    crlPath = new URL(o.ca.crlUrl).pathname;
  } catch {
    crlPath = undefined;
  }
  const text = (res: ServerResponse, status: number, body: string): void => {
    res
      .writeHead(status, { 'content-type': 'text/plain; charset=utf-8' })
      .end(body.endsWith('\n') ? body : body + '\n');
  };

  const issue = async (res: ServerResponse, host: string, body: Buffer): Promise<void> => {
    const leases = o.leases.leasesOf(host).filter((l) => l.expiresAt > now());
    if (!leases.some((l) => l.kind === 'port')) {
      log(`csr from ${host} refused: no port lease`);
      text(res, 403, `${host} holds no port lease: lease a block with PAP first`);
      return;
    }
    const r = await o.ca.issue(body, { host, leases });
    if (!r.ok) {
      log(`csr from ${host} refused: ${r.reason}: ${r.detail}`);
      text(res, STATUS_OF[r.reason], `${r.reason}: ${r.detail}`);
      return;
    }
    log(
      `${r.reused ? 'reissued' : 'issued'} ${r.certificate.serialNumber} to ${host}: ${r.certificate.subject}`,
    );
    res
      .writeHead(r.reused ? 200 : 201, { 'content-type': 'application/pem-certificate-chain' })
      .end(r.chainPem);
  };

  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const host = peerAddress(req);
    const fault = (e: unknown): void => {
      log(`${req.method} ${path} from ${host} failed: ${(e as Error).message}`);
      if (!res.headersSent) text(res, 500, 'internal error');
      else res.destroy();
    };
    if (req.method === 'GET' && (path === '/crl' || path === crlPath)) {
      o.ca
        .crl()
        .then(
          (crl) =>
            res
              .writeHead(200, { 'content-type': 'application/pkix-crl', 'cache-control': 'no-cache' })
              .end(Buffer.from(crl.rawData)),
          fault,
        );
      return;
    }
    if (req.method === 'GET' && path === '/ca') {
      res.writeHead(200, { 'content-type': 'application/pem-certificate-chain' }).end(o.ca.caChainPem());
      return;
    }
    if (path === '/csr' && (o.acceptCsr ?? true)) {
      if (req.method !== 'POST') {
        res.writeHead(405, { allow: 'POST', 'content-type': 'text/plain' }).end('POST a PKCS #10 request\n');
        return;
      }
      const declared = Number(req.headers['content-length'] ?? 0);
      if (declared > maxBytes) {
        text(res, 413, `a certificate request is at most ${maxBytes} bytes`);
        req.resume();
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          text(res, 413, `a certificate request is at most ${maxBytes} bytes`);
          req.destroy();
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => {
        if (size <= maxBytes) issue(res, host, Buffer.concat(chunks)).catch(fault);
      });
      req.on('error', () => res.destroy());
      return;
    }
    text(res, 404, 'paths: POST /csr, GET /ca, GET /crl');
  };
}

/** Listens on one address (the router's LAN address for the full endpoint). */
export function startPkiServer(
  o: PkiHttpOptions & { readonly host: string; readonly port?: number },
): Promise<Server> {
  const server = createServer(pkiRequestHandler(o));
  // A slow client holds one socket for at most this long.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? PKI_HTTP_PORT, o.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
