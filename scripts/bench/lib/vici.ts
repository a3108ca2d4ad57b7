/**
 * A minimal client of vici, strongSwan's control protocol, so that the IKE
 * benchmark drives charon without a swanctl process start per handshake.
 *
 * Framing: a 4-byte big-endian length, then the packet: type (0 CMD_REQUEST,
 * 1 CMD_RESPONSE, 7 EVENT, ...), for named packets a 1-byte name length and
 * the name, then a message of elements:
 *
 *   | element          | code | then                                   |
 *   |------------------|------|----------------------------------------|
 *   | SECTION_START    | 1    | 1-byte name length, name               |
 *   | SECTION_END      | 2    |                                        |
 *   | KEY_VALUE        | 3    | name (1-byte length), value (2-byte)   |
 *   | LIST_START       | 4    | 1-byte name length, name               |
 *   | LIST_ITEM        | 5    | value (2-byte length)                  |
 *   | LIST_END         | 6    |                                        |
 *
 * One request at a time per connection; concurrency is several connections.
 */
import { createConnection, type Socket } from 'node:net';

export class Vici {
  readonly #socket: Socket;
  #buffer: Buffer = Buffer.alloc(0);
  #pending: ((payload: Buffer) => void) | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buffer = this.#buffer.length === 0 ? d : Buffer.concat([this.#buffer, d]);
      while (this.#buffer.length >= 4 && this.#buffer.length >= 4 + this.#buffer.readUInt32BE(0)) {
        const payload = this.#buffer.subarray(4, 4 + this.#buffer.readUInt32BE(0));
        this.#buffer = this.#buffer.subarray(4 + payload.length);
        // Only CMD_RESPONSE (1): no events are registered for.
        if (payload[0] === 1) {
          const p = this.#pending;
          this.#pending = undefined;
          p?.(payload.subarray(1));
        }
      }
    });
  }

  static open(path: string): Promise<Vici> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path, () => resolve(new Vici(s)));
      s.once('error', reject);
    });
  }

  /** A command with string values; resolves with the response's key/values, nested names joined by '.'. */
  request(command: string, values: Record<string, string>): Promise<Record<string, string>> {
    const parts: Buffer[] = [Buffer.from([0, command.length]), Buffer.from(command)];
    for (const [k, v] of Object.entries(values)) {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(Buffer.byteLength(v));
      parts.push(Buffer.from([3, k.length]), Buffer.from(k), len, Buffer.from(v));
    }
    const body = Buffer.concat(parts);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    return new Promise((resolve) => {
      this.#pending = (m) => resolve(parseKeyValues(m));
      this.#socket.write(Buffer.concat([head, body]));
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** The key/value elements of a vici message, "section.key" for nested ones; lists skipped. */
export function parseKeyValues(m: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  const path: string[] = [];
  const name = (at: number): string => m.subarray(at + 1, at + 1 + m[at]!).toString();
  for (let i = 0; i < m.length;) {
    const type = m[i++]!;
    if (type === 1 || type === 4) {
      path.push(name(i));
      i += 1 + m[i]!;
    } else if (type === 2 || type === 6) path.pop();
    else if (type === 3) {
      const k = name(i);
      i += 1 + m[i]!;
      const vl = m.readUInt16BE(i);
      out[[...path, k].join('.')] = m.subarray(i + 2, i + 2 + vl).toString();
      i += 2 + vl;
    } else if (type === 5) i += 2 + m.readUInt16BE(i);
    else break;
  }
  return out;
}
