/**
 * IKE over real UDP sockets (node:dgram).
 *
 * Two layouts:
 * - Two ports, the classic 500 and 4500: plain IKE on the first; on the
 *   second every IKE message carries the non-ESP marker (four zero bytes)
 *   and everything else is ESP-in-UDP (RFC 3948), handed to `onEsp`.
 * - One port for both, as a host behind distnat runs it on one of its leased
 *   ports (it has no 500 of its own): a datagram with the marker is NAT-T
 *   IKE, one that parses as an IKE header whose length is the datagram's is
 *   plain IKE, anything else is ESP-in-UDP. A one-byte 0xFF is a NAT
 *   keepalive and is dropped.
 */
import { createSocket, type Socket } from 'node:dgram';
import { NON_ESP_MARKER_LENGTH } from './header.ts';
import type { Endpoint, IkeReceiveHandler, IkeTransport } from './transport.ts';

export interface UdpTransportOptions {
  /** The address to bind and to claim in NAT detection (a distnat host: the shared address). */
  readonly address: string;
  /** Plain IKE port; 0 picks a free one. */
  readonly port: number;
  /** NAT-T port; default the same as `port` (one shared socket). */
  readonly nattPort?: number;
  /** ESP-in-UDP datagrams (marker-less, not IKE) that arrive on the NAT-T socket. */
  readonly onEsp?: (data: Buffer, remote: Endpoint) => void;
}

const MARKER = Buffer.alloc(NON_ESP_MARKER_LENGTH);

function looksLikeIke(d: Buffer): boolean {
  return d.length >= 28 && d[17] === 0x20 && d.readUInt32BE(24) === d.length;
}

export class UdpTransport implements IkeTransport {
  #local: Endpoint;
  #nattPort: number;
  readonly #plain: Socket;
  readonly #natt: Socket | undefined;
  readonly #onEsp: UdpTransportOptions['onEsp'];
  #handler: IkeReceiveHandler | undefined;
  /**
   * Datagrams dropped here, below IKE, by reason: 'marker-on-500' (port 500
   * never carries the non-ESP marker), 'not-ike' (neither IKE nor ESP, with
   * no ESP handler), 'keepalive' (NAT keepalives, RFC 3948 2.3), 'send-failed',
   * 'socket-error'.
   */
  readonly drops = new Map<string, number>();

  #drop(reason: string): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
  }

  private constructor(o: UdpTransportOptions, plain: Socket, natt: Socket | undefined) {
    this.#plain = plain;
    this.#natt = natt;
    this.#onEsp = o.onEsp;
    this.#local = { address: o.address, port: plain.address().port };
    this.#nattPort = natt ? natt.address().port : this.#local.port;
  }

  /** Binds the socket(s) and resolves once they listen. */
  static async open(o: UdpTransportOptions): Promise<UdpTransport> {
    const bind = (port: number): Promise<Socket> =>
      new Promise((resolve, reject) => {
        const s = createSocket({ type: 'udp4', reuseAddr: false });
        s.once('error', reject);
        s.bind(port, o.address, () => {
          s.off('error', reject);
          resolve(s);
        });
      });
    const plain = await bind(o.port);
    let natt: Socket | undefined;
    if (o.nattPort !== undefined && o.nattPort !== o.port) {
      try {
        natt = await bind(o.nattPort);
      } catch (e) {
        plain.close();
        throw e;
      }
    }
    const t = new UdpTransport(o, plain, natt);
    plain.on('message', (m, r) =>
      t.#receive(m, { address: r.address, port: r.port }, natt === undefined ? 'shared' : 'plain'),
    );
    natt?.on('message', (m, r) => t.#receive(m, { address: r.address, port: r.port }, 'natt'));
    plain.on('error', () => t.#drop('socket-error'));
    natt?.on('error', () => t.#drop('socket-error'));
    return t;
  }

  get local(): Endpoint {
    return this.#local;
  }

  get nattPort(): number {
    return this.#nattPort;
  }

  #receive(m: Buffer, remote: Endpoint, socket: 'plain' | 'natt' | 'shared'): void {
    const marked = m.length >= NON_ESP_MARKER_LENGTH && m.readUInt32BE(0) === 0;
    if (socket === 'plain') {
      // Port 500 carries no markers (RFC 3948 2.2).
      if (marked) this.#drop('marker-on-500');
      else this.#handler?.(m, remote, false);
      return;
    }
    if (marked) {
      this.#handler?.(m.subarray(NON_ESP_MARKER_LENGTH), remote, true);
      return;
    }
    if (m.length === 1 && m[0] === 0xff) {
      this.#drop('keepalive');
      return;
    }
    if (socket === 'shared' && looksLikeIke(m)) {
      this.#handler?.(m, remote, false);
      return;
    }
    if (this.#onEsp) this.#onEsp(m, remote);
    else this.#drop('not-ike');
  }

  send(data: Uint8Array, remote: Endpoint, natt: boolean): void {
    const socket = natt ? (this.#natt ?? this.#plain) : this.#plain;
    const bytes = natt ? Buffer.concat([MARKER, data]) : Buffer.from(data);
    socket.send(bytes, remote.port, remote.address, (err) => {
      if (err) this.#drop('send-failed');
    });
  }

  /**
   * An ESP-in-UDP datagram (RFC 3948, no marker) from the NAT-T socket: the
   * data plane shares the port with IKE, as the peer expects.
   */
  sendEsp(data: Uint8Array, remote: Endpoint): void {
    (this.#natt ?? this.#plain).send(data, remote.port, remote.address, (err) => {
      if (err) this.#drop('send-failed');
    });
  }

  onMessage(handler: IkeReceiveHandler): void {
    this.#handler = handler;
  }

  close(): void {
    this.#plain.close();
    this.#natt?.close();
  }
}
