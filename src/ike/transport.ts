/**
 * Where IKE messages come from and go to. The exchanges see only this
 * interface, so tests run in memory and the daemon runs on any UDP port
 * (udp-transport.ts): on a host behind distnat, one of its leased ports.
 *
 * `natt` marks the NAT-traversal path (RFC 3948): messages there share a
 * port with ESP-in-UDP and carry the four-byte non-ESP marker on the wire.
 * The transport adds and strips the marker; the IKE layer only says which
 * path a message takes, and answers on the path a request came on.
 */
import type { Endpoint } from './nat.ts';

export type { Endpoint };

export type IkeReceiveHandler = (data: Buffer, remote: Endpoint, natt: boolean) => void;

export interface IkeTransport {
  /** The address and plain IKE port we are reached at (NAT detection hashes it). */
  readonly local: Endpoint;
  /** Our NAT-T port: 4500, or the same leased port as `local`. */
  readonly nattPort: number;
  send(data: Uint8Array, remote: Endpoint, natt: boolean): void;
  /** Installs the one receive handler (replacing any earlier one). */
  onMessage(handler: IkeReceiveHandler): void;
  close(): void;
}

const key = (e: Endpoint): string => `${e.address}:${e.port}`;

/**
 * An in-memory network of transports. Delivery is asynchronous (a
 * macrotask), in order, and can be intercepted: `filter` sees every
 * datagram and may drop it (return false), which the retransmission and
 * flood tests use.
 */
export class MemoryNetwork {
  readonly #ports = new Map<string, MemoryTransport>();
  /** Datagrams delivered (after the filter). */
  delivered = 0;
  dropped = 0;
  filter: ((data: Buffer, from: Endpoint, to: Endpoint, natt: boolean) => boolean) | undefined;

  attach(address: string, port: number, nattPort = port): MemoryTransport {
    const t = new MemoryTransport(this, { address, port }, nattPort);
    this.#ports.set(key({ address, port }), t);
    if (nattPort !== port) this.#ports.set(key({ address, port: nattPort }), t);
    return t;
  }

  /** @internal */
  deliver(data: Buffer, from: Endpoint, to: Endpoint, natt: boolean): void {
    const copy = Buffer.from(data);
    if (this.filter !== undefined && !this.filter(copy, from, to, natt)) {
      this.dropped++;
      return;
    }
    setImmediate(() => {
      const t = this.#ports.get(key(to));
      if (t === undefined) {
        this.dropped++;
        return;
      }
      this.delivered++;
      t.receive(copy, from, natt);
    });
  }

  /** @internal */
  detach(t: MemoryTransport): void {
    for (const [k, v] of this.#ports) if (v === t) this.#ports.delete(k);
  }
}

export class MemoryTransport implements IkeTransport {
  readonly #net: MemoryNetwork;
  readonly local: Endpoint;
  readonly nattPort: number;
  #handler: IkeReceiveHandler | undefined;
  sent = 0;

  constructor(net: MemoryNetwork, local: Endpoint, nattPort: number) {
    this.#net = net;
    this.local = local;
    this.nattPort = nattPort;
  }

  send(data: Uint8Array, remote: Endpoint, natt: boolean): void {
    this.sent++;
    const from = natt ? { address: this.local.address, port: this.nattPort } : this.local;
    this.#net.deliver(Buffer.from(data), from, remote, natt);
  }

  onMessage(handler: IkeReceiveHandler): void {
    this.#handler = handler;
  }

  /** @internal */
  receive(data: Buffer, from: Endpoint, natt: boolean): void {
    this.#handler?.(data, from, natt);
  }

  close(): void {
    this.#net.detach(this);
    this.#handler = undefined;
  }
}
