/**
 * PAP over UDP from the host's side: one socket bound to the host's LAN
 * address (so the router sees the address it leases to) on a port the
 * kernel picks, kept open while the agent runs, since the router sends its
 * withdraws to where it last heard the host from (docs/pap.md 1).
 */
import { createSocket } from 'node:dgram';
import { PAP_MESSAGE_LENGTH, PAP_UDP_PORT } from '../wire/pap.ts';
import type { PapPeer, PapTransport } from '../pap/transport.ts';

export interface ClosablePapTransport extends PapTransport {
  /** Where it listens, for logs. */
  readonly local: string;
  close(): void;
}

/** Binds the socket; rejects with the errno (EADDRNOTAVAIL when `lanAddress` is not this host's). */
export function openHostPapUdp(
  lanAddress: string,
  onError: (err: Error) => void = () => {},
): Promise<ClosablePapTransport> {
  const socket = createSocket({ type: 'udp4' });
  const handlers: ((bytes: Uint8Array, peer: PapPeer) => void)[] = [];
  socket.on('message', (msg, rinfo) => {
    // Anything but exactly 28 octets is not PAP (docs/pap.md 1); parsing says the rest.
    if (msg.length !== PAP_MESSAGE_LENGTH) return;
    const bytes = new Uint8Array(msg.buffer, msg.byteOffset, msg.length);
    for (const h of handlers) h(bytes, { address: rinfo.address, port: rinfo.port });
  });
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: lanAddress, port: 0, exclusive: true }, () => {
      socket.off('error', reject);
      socket.on('error', onError);
      const { port } = socket.address();
      resolve({
        local: `${lanAddress}:${port}`,
        send(bytes: Uint8Array, peer: PapPeer): void {
          // A copy: the datagram leaves after send() returns, and the caller may reuse its bytes.
          socket.send(Buffer.from(bytes), peer.port ?? PAP_UDP_PORT, peer.address, (err) => {
            if (err) onError(err);
          });
        },
        onMessage(handler): void {
          handlers.push(handler);
        },
        close(): void {
          socket.close();
        },
      });
    });
  });
}
