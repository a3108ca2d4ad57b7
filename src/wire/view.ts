/**
 * What every header view shares: a window [offset, offset + length) on a
 * buffer, re-pointed per packet with `wrap` so that one instance serves a whole
 * loop without allocating. Each header's `check` validates the window once;
 * its accessors then read only inside it.
 */
export abstract class HeaderView {
  buf: Uint8Array;
  offset: number;
  length: number;

  constructor(buf: Uint8Array, offset = 0, length = buf.length - offset) {
    this.buf = buf;
    this.offset = offset;
    this.length = length;
  }

  wrap(buf: Uint8Array, offset = 0, length = buf.length - offset): this {
    this.buf = buf;
    this.offset = offset;
    this.length = length;
    return this;
  }
}
