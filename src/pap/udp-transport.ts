/**
 * PAP over UDP (docs/pap.md section 1): the default transport. The router
 * binds its LAN address, port 7032; a host binds its LAN address and any
 * port, and keeps that socket for as long as it holds blocks, since the
 * router's withdraws go to the address and port it last heard the host from.
 *
 * Every datagram is handed up whatever its length: the PAP receiver rules
 * (length, checksum, version, type, code) are PapServer's and PapClient's,
 * so that they count what they drop.
 */
import { createSocket, type Socket } from 'node:dgram';
import { PAP_UDP_PORT } from '../wire/pap.ts';
import type { PapPeer, PapTransport } from './transport.ts';

export interface UdpPapTransportOptions {
  /** Local IPv4 address to bind: the router's LAN address, or the host's. */
  readonly address: string;
  /** Local port; default 7032 (the router). Hosts pass 0 for any free port. */
  readonly port?: number;
  /** Port a message goes to when its peer names none (a host sending to the router). Default 7032. */
  readonly defaultPeerPort?: number;
  /** Called for socket errors after the bind (they do not stop the socket). */
  readonly onError?: (err: Error) => void;
}

export interface UdpPapTransportCounters {
  received: number;
  sent: number;
  sendErrors: number;
}

export class UdpPapTransport implements PapTransport {
  readonly counters: UdpPapTransportCounters = { received: 0, sent: 0, sendErrors: 0 };
  readonly #socket: Socket;
  readonly #handlers: Array<(bytes: Uint8Array, peer: PapPeer) => void> = [];
  readonly #defaultPeerPort: number;
  readonly #onError: ((err: Error) => void) | undefined;
  #closed = false;

  private constructor(socket: Socket, options: UdpPapTransportOptions) {
    this.#socket = socket;
    this.#defaultPeerPort = options.defaultPeerPort ?? PAP_UDP_PORT;
    this.#onError = options.onError;
    socket.on('message', (msg, rinfo) => {
      this.counters.received++;
      const peer: PapPeer = { address: rinfo.address, port: rinfo.port };
      for (const h of this.#handlers) h(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), peer);
    });
    socket.on('error', (err) => this.#onError?.(err));
  }

  /**
   * Binds the socket. Rejects with the bind error, whose `code` tells
   * EADDRINUSE (another process has the port) from EADDRNOTAVAIL (the
   * address is not on this machine).
   */
  static open(options: UdpPapTransportOptions): Promise<UdpPapTransport> {
    const socket = createSocket({ type: 'udp4', reuseAddr: false });
    return new Promise((resolve, reject) => {
      const fail = (err: Error) => {
        socket.close();
        reject(err);
      };
      socket.once('error', fail);
      socket.bind({ address: options.address, port: options.port ?? PAP_UDP_PORT, exclusive: true }, () => {
        socket.off('error', fail);
        resolve(new UdpPapTransport(socket, options));
      });
    });
  }

  /** The address and port actually bound. */
  get local(): PapPeer {
    const a = this.#socket.address();
    return { address: a.address, port: a.port };
  }

  send(bytes: Uint8Array, peer: PapPeer): void {
    if (this.#closed) return;
    // dgram sends later; the caller may reuse `bytes` as soon as we return.
    const copy = Buffer.from(bytes);
    this.#socket.send(copy, peer.port ?? this.#defaultPeerPort, peer.address, (err) => {
      if (err) {
        this.counters.sendErrors++;
        this.#onError?.(err);
      } else this.counters.sent++;
    });
  }

  onMessage(handler: (bytes: Uint8Array, peer: PapPeer) => void): void {
    this.#handlers.push(handler);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return new Promise((resolve) => this.#socket.close(() => resolve()));
  }
}
