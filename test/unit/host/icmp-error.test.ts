import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SourcePortTranslationTable } from '../../../src/host/data-path/translation/sptt.ts';
import { PortTranslator } from '../../../src/host/data-path/translation/translator.ts';
import {
  BlockPortSource,
  ESP,
  HOP,
  SERVER,
  SHARED,
  checksumsVerify,
  icmpError,
  icmpQuery,
  ipv4,
  tcp,
  udp,
} from './packets.ts';

const UNREACHABLE = 3;
const TIME_EXCEEDED = 11;
const PORT_UNREACHABLE = 3;
const FRAG_NEEDED = 4;

function setup(first = 1032, count = 32) {
  const table = new SourcePortTranslationTable(new BlockPortSource(first, count));
  return { table, xlat: new PortTranslator(table) };
}

const out = (x: PortTranslator, p: Uint8Array, now = 0) => x.outbound(p, 0, 20, p.length, now);
const inn = (x: PortTranslator, p: Uint8Array, now = 0) => x.inbound(p, 0, 20, p.length, now);

describe('PortTranslator: ICMP errors (RFC 5508 section 7)', () => {
  it('gives back to the local stack exactly the packet it sent, in any error quoting it', () => {
    const cases = fc.record({
      kind: fc.constantFrom('tcp', 'udp', 'udp-no-checksum', 'echo'),
      local: fc.integer({ min: 1, max: 65535 }),
      payload: fc.uint8Array({ maxLength: 40 }),
      // 8 bytes is RFC 792's minimum quote; routers following RFC 1812 quote more.
      quoteTransport: fc.constantFrom(8, 12, 18, 20, 1000),
      error: fc.constantFrom(
        [UNREACHABLE, PORT_UNREACHABLE],
        [UNREACHABLE, FRAG_NEEDED],
        [TIME_EXCEEDED, 0],
        [12, 0],
        [4, 0],
      ),
      fromServer: fc.boolean(),
    });
    fc.assert(
      fc.property(cases, (c) => {
        const { xlat } = setup();
        const original =
          c.kind === 'tcp'
            ? tcp(SHARED, c.local, SERVER, 443, 0x18, c.payload)
            : c.kind === 'echo'
              ? icmpQuery(SHARED, SERVER, 8, c.local, 7, c.payload)
              : udp(SHARED, c.local, SERVER, 53, c.payload, { noChecksum: c.kind === 'udp-no-checksum' });
        const sent = Uint8Array.from(original);
        expect(out(xlat, sent)).toBe('translated');
        const quoteBytes = 20 + c.quoteTransport;
        const err = icmpError(
          c.fromServer ? SERVER : HOP,
          SHARED,
          c.error[0]!,
          c.error[1]!,
          sent,
          quoteBytes,
        );
        expect(inn(xlat, err)).toBe('translated');
        // The quote now holds the original bytes, including its transport checksum when quoted.
        expect(err.subarray(28)).toEqual(original.subarray(0, Math.min(quoteBytes, original.length)));
        // And the error's own checksum verifies from scratch.
        expect(checksumsVerify(err)).toBe(true);
      }),
      { seed: 0x5508, numRuns: 400 },
    );
  });

  it('translates the quote of an outbound error about an inbound packet (port unreachable)', () => {
    const { xlat, table } = setup(1032, 1);
    const sent = udp(SHARED, 40000, SERVER, 53, new Uint8Array([1]));
    out(xlat, sent);
    const arrivedFromRouter = udp(SERVER, 53, SHARED, 1032, new Uint8Array([2, 3]));
    const asWired = Uint8Array.from(arrivedFromRouter);
    expect(inn(xlat, arrivedFromRouter)).toBe('translated');
    // The local stack has no socket any more and answers with port unreachable, quoting what it saw.
    const err = icmpError(SHARED, SERVER, UNREACHABLE, PORT_UNREACHABLE, arrivedFromRouter);
    expect(out(xlat, err)).toBe('translated');
    expect(err.subarray(28)).toEqual(asWired);
    expect(checksumsVerify(err)).toBe(true);
    expect(table.size).toBe(1);
  });

  it('does not refresh a row', () => {
    const { xlat, table } = setup(1032, 1);
    const sent = udp(SHARED, 40000, SERVER, 53);
    out(xlat, sent, 1000);
    inn(xlat, icmpError(HOP, SHARED, TIME_EXCEEDED, 0, sent), 2000);
    expect(table.rows()[0]!.lastUse).toBe(1000);
  });

  it('drops errors that fail their checks, and leaves those about other things alone', () => {
    const { xlat } = setup(1032, 1);
    const sent = tcp(SHARED, 5555, SERVER, 80, 0x02);
    out(xlat, sent);

    const corrupt = icmpError(SERVER, SHARED, UNREACHABLE, 1, sent);
    corrupt[56] = corrupt[56]! ^ 0xff; // a quoted sequence number byte: only the checksum is wrong
    expect(inn(xlat, corrupt)).toBe('not-translatable');

    // Quoting a packet that was not from our address.
    const foreign = Uint8Array.from(sent);
    foreign[15] = foreign[15]! ^ 1;
    expect(inn(xlat, icmpError(SERVER, SHARED, UNREACHABLE, 1, foreign))).toBe('not-translatable');

    // A quote shorter than an IPv4 header plus 8 bytes.
    expect(inn(xlat, icmpError(SERVER, SHARED, UNREACHABLE, 1, sent, 27))).toBe('not-translatable');

    // A flow this host has no row for.
    const unknown = tcp(SHARED, 1033, SERVER, 80, 0x02);
    expect(inn(xlat, icmpError(SERVER, SHARED, UNREACHABLE, 1, unknown))).toBe('no-mapping');

    // ESP (its SPI is leased as is), a later fragment, a quoted echo reply: nothing to translate.
    for (const quoted of [
      ipv4(SHARED, SERVER, ESP, new Uint8Array(16)),
      udp(SHARED, 1032, SERVER, 53, new Uint8Array(8), { fragmentOffset: 2 }),
      icmpQuery(SHARED, SERVER, 0, 1032, 1),
    ]) {
      const err = icmpError(SERVER, SHARED, UNREACHABLE, 1, quoted);
      const before = Uint8Array.from(err);
      expect(inn(xlat, err)).toBe('unchanged');
      expect(err).toEqual(before);
    }
  });

  it('handles the TCP quote that stops before the TCP checksum', () => {
    const { xlat } = setup(1032, 1);
    const original = tcp(SHARED, 5555, SERVER, 80, 0x02, new Uint8Array(10));
    const sent = Uint8Array.from(original);
    out(xlat, sent);
    const err = icmpError(SERVER, SHARED, UNREACHABLE, FRAG_NEEDED, sent, 28);
    expect(inn(xlat, err)).toBe('translated');
    expect(err.subarray(28)).toEqual(original.subarray(0, 28));
    expect(checksumsVerify(err)).toBe(true);
  });
});
