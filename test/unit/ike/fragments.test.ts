/**
 * IKE fragments (RFC 7383) as bytes and their reassembly: against scapy's
 * layout with python's cryptography (scripts/fixtures/golden_ike_fragments.py),
 * round trips for both SK suites, the reassembly rules of 2.6 one by one,
 * and a fuzzer that throws fragment sequences at the reassembler and checks
 * that it never throws, never holds more than its bounds, and puts every
 * complete message back together exactly.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encrAlgorithm, INTEG_ALGORITHMS } from '../../../src/ike/algorithms.ts';
import { EncrId, ExchangeType, HeaderFlag, IntegId, PayloadType } from '../../../src/ike/constants.ts';
import { FragmentBudget, Reassembly, type FragmentVerdict } from '../../../src/ike/fragment-reassembly.ts';
import {
  emitFragment,
  emitProtected,
  fragmentContentLength,
  fragmentHeader,
  maxMessageFor,
  openFragment,
} from '../../../src/ike/fragments.ts';
import { openIkeMessage, parseIkeMessage, type IkeMessage } from '../../../src/ike/message.ts';
import { emitPayloadChain, parsePayloadChain } from '../../../src/ike/payloads.ts';
import { SkCipher, type SkKeys } from '../../../src/ike/sk-cipher.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { payloadArb } from './arbitraries.ts';

interface GoldenCase {
  name: string;
  encr: number;
  key_bits: number;
  integ: number | null;
  encryption_key: string;
  integrity_key: string;
  piece: number;
  first_inner: number;
  chain: string;
  fragments: { iv: string; content: string; hex: string }[];
}

const golden = (
  JSON.parse(readFileSync(new URL('./fixtures/fragments-scapy.json', import.meta.url), 'utf8')) as {
    cases: GoldenCase[];
  }
).cases;

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

const keysOf = (c: GoldenCase): SkKeys => ({
  encr: encrAlgorithm(c.encr, c.key_bits)!,
  integ: c.integ === null ? undefined : INTEG_ALGORITHMS.get(c.integ),
  encryptionKey: hex(c.encryption_key),
  integrityKey: hex(c.integrity_key),
});

/** An SkCipher whose IVs are given, for byte-exact output. */
class FixedIvCipher extends SkCipher {
  readonly #ivs: Buffer[];
  constructor(keys: SkKeys, ivs: Buffer[]) {
    super(keys);
    this.#ivs = [...ivs];
  }
  override nextIv(): Buffer {
    return this.#ivs.shift()!;
  }
}

const HEADER = {
  spiI: 0x0102030405060708n,
  spiR: 0x1112131415161718n,
  exchange: ExchangeType.IKE_AUTH,
  flags: HeaderFlag.INITIATOR,
  messageId: 1,
};

const parse = (b: Buffer): IkeMessage => {
  const p = parseIkeMessage(b);
  if (!p.ok) throw new Error(`does not parse: ${p.reason}`);
  return p.value;
};

const gcmKeys: SkKeys = {
  encr: encrAlgorithm(EncrId.AES_GCM_16, 128)!,
  integ: undefined,
  encryptionKey: Buffer.alloc(20, 7),
  integrityKey: Buffer.alloc(0),
};
const cbcKeys: SkKeys = {
  encr: encrAlgorithm(EncrId.AES_CBC, 256)!,
  integ: INTEG_ALGORITHMS.get(IntegId.HMAC_SHA2_256_128),
  encryptionKey: Buffer.alloc(32, 9),
  integrityKey: Buffer.alloc(32, 3),
};

const budgetOf = (limit = 1 << 20): FragmentBudget => new FragmentBudget(limit);
const limits = { maxFragments: 8, maxMessageBytes: 4000, timeoutMs: 1000 };

function reassembly(
  budget = budgetOf(),
  clock = new FakeClock(0),
  l = limits,
): { r: Reassembly; notes: string[]; clock: FakeClock } {
  const notes: string[] = [];
  const r = new Reassembly(
    budget,
    l,
    (cb, ms) => clock.setTimeout(cb, ms),
    (w) => notes.push(w),
  );
  return { r, notes, clock };
}

const fh = (number: number, total: number, firstInner = 0): Parameters<Reassembly['add']>[1] => ({
  number,
  total,
  firstInner,
  ivOffset: 0,
});

describe('SKF fragments against scapy', () => {
  for (const c of golden)
    it(`${c.name}: opens and reassembles scapy's fragments, and emits the same bytes from the same IVs`, () => {
      const cipher = new SkCipher(keysOf(c));
      const { r } = reassembly(budgetOf(), new FakeClock(0), { ...limits, maxMessageBytes: 64 * 1024 });
      let verdict: FragmentVerdict | undefined;
      c.fragments.forEach((f, i) => {
        const msg = parse(hex(f.hex));
        expect(msg.header.nextPayload).toBe(PayloadType.SKF);
        expect(msg.encrypted?.type).toBe(PayloadType.SKF);
        const h = fragmentHeader(msg);
        if (!h.ok) throw new Error(h.reason);
        expect([h.value.number, h.value.total]).toEqual([i + 1, c.fragments.length]);
        expect(h.value.firstInner).toBe(i === 0 ? c.first_inner : 0);
        const opened = openFragment(msg, h.value, cipher);
        if (!opened.ok) throw new Error(opened.reason);
        expect(opened.content.toString('hex')).toBe(f.content);
        verdict = r.add(msg.header.messageId, h.value, opened.content);
      });
      expect(verdict?.kind).toBe('complete');
      if (verdict?.kind !== 'complete') return;
      expect(verdict.chain.toString('hex')).toBe(c.chain);
      expect(verdict.firstInner).toBe(c.first_inner);
      const chain = parsePayloadChain(verdict.chain, 0, verdict.firstInner);
      if (!chain.ok) throw new Error(chain.reason);
      expect(chain.value.payloads.map((p) => p.type)).toEqual([
        PayloadType.IDi,
        PayloadType.CERTREQ,
        PayloadType.NOTIFY,
        PayloadType.AUTH,
      ]);
      expect(emitPayloadChain(chain.value.payloads).toString('hex')).toBe(c.chain);

      // The same message, fragmented here for a 576-byte datagram: scapy's bytes exactly.
      expect(fragmentContentLength(cipher, maxMessageFor(576, false))).toBe(c.piece);
      const ours = emitProtected(
        HEADER,
        chain.value.payloads,
        new FixedIvCipher(
          keysOf(c),
          c.fragments.map((f) => hex(f.iv)),
        ),
        maxMessageFor(576, false),
      );
      expect(ours.map((b) => b.toString('hex'))).toEqual(c.fragments.map((f) => f.hex));
    });

  it('refuses a fragment whose number or total was changed (both are authenticated)', () => {
    const c = golden[0]!;
    const cipher = new SkCipher(keysOf(c));
    const b = hex(c.fragments[1]!.hex);
    b.writeUInt16BE(1, 32); // fragment 2 claims to be fragment 1
    const msg = parse(b);
    const h = fragmentHeader(msg);
    expect(h.ok && openFragment(msg, h.value, cipher)).toMatchObject({ ok: false, reason: 'icv-mismatch' });
  });
});

describe('emitProtected', () => {
  it('sends one SK message when it fits or the peer did not offer fragmentation', () => {
    const payloads = [{ type: PayloadType.NONCE, data: Buffer.alloc(200, 1) }] as const;
    for (const max of [undefined, 1252]) {
      const out = emitProtected(HEADER, payloads, new SkCipher(gcmKeys), max);
      expect(out.length).toBe(1);
      expect(parse(out[0]!).encrypted?.type).toBe(PayloadType.SK);
      const opened = openIkeMessage(parse(out[0]!), new SkCipher(gcmKeys));
      expect(opened.ok).toBe(true);
    }
  });

  it('splits any chain into fragments that fit, and they put it back together (both suites)', () => {
    fc.assert(
      fc.property(
        fc.array(payloadArb, { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 576, max: 1500 }),
        fc.boolean(),
        fc.boolean(),
        (payloads, datagram, cbc, natt) => {
          const keys = cbc ? cbcKeys : gcmKeys;
          const max = maxMessageFor(datagram, natt);
          const chain = emitPayloadChain(payloads);
          const out = emitProtected(HEADER, payloads, new SkCipher(keys), max);
          const rx = new SkCipher(keys);
          const { r } = reassembly(budgetOf(), new FakeClock(0), {
            maxFragments: 1000,
            maxMessageBytes: 1 << 20,
            timeoutMs: 1000,
          });
          for (const d of out) expect(d.length).toBeLessThanOrEqual(max);
          if (out.length === 1 && parse(out[0]!).encrypted?.type === PayloadType.SK) return;
          let v: FragmentVerdict | undefined;
          for (const d of out) {
            const m = parse(d);
            const h = fragmentHeader(m);
            if (!h.ok) throw new Error(h.reason);
            const o = openFragment(m, h.value, rx);
            if (!o.ok) throw new Error(o.reason);
            v = r.add(1, h.value, o.content);
          }
          expect(v?.kind).toBe('complete');
          if (v?.kind === 'complete') {
            expect(v.chain.equals(chain)).toBe(true);
            expect(v.firstInner).toBe(payloads[0]!.type);
          }
        },
      ),
      { seed: 11, numRuns: 300 },
    );
  });

  it('emitFragment writes the header fields RFC 7383 2.5 asks for', () => {
    const b = emitFragment(HEADER, 2, 3, PayloadType.NONE, Buffer.alloc(10, 5), new SkCipher(gcmKeys));
    expect(b[16]).toBe(PayloadType.SKF);
    expect(b.readUInt32BE(24)).toBe(b.length);
    expect(b[28]).toBe(0);
    expect(b.readUInt16BE(30)).toBe(b.length - 28);
    expect([b.readUInt16BE(32), b.readUInt16BE(34)]).toEqual([2, 3]);
  });
});

describe('reassembly (RFC 7383 2.6)', () => {
  const bytes = (n: number, v: number): Buffer => Buffer.alloc(n, v);

  it('completes out of order, and takes the first inner type from fragment 1', () => {
    const { r } = reassembly();
    expect(r.add(5, fh(3, 3), bytes(3, 3)).kind).toBe('more');
    expect(r.add(5, fh(1, 3, PayloadType.IDi), bytes(3, 1)).kind).toBe('more');
    const v = r.add(5, fh(2, 3), bytes(3, 2));
    expect(v).toEqual({
      kind: 'complete',
      chain: Buffer.from([1, 1, 1, 2, 2, 2, 3, 3, 3]),
      firstInner: PayloadType.IDi,
    });
    expect(r.holding).toBe(0);
  });

  it('drops duplicates and overlaps, stale totals, too many fragments; restarts on a larger total', () => {
    const { r, notes } = reassembly();
    expect(r.add(1, fh(1, 9), bytes(2, 1))).toEqual({ kind: 'dropped', reason: 'fragment-too-many' });
    r.add(1, fh(1, 3), bytes(4, 1));
    expect(r.add(1, fh(1, 3), bytes(4, 1))).toEqual({ kind: 'dropped', reason: 'fragment-duplicate' });
    expect(r.add(1, fh(1, 3), bytes(4, 2))).toEqual({ kind: 'dropped', reason: 'fragment-overlap' });
    expect(r.add(1, fh(1, 2), bytes(4, 1))).toEqual({ kind: 'dropped', reason: 'fragment-stale-total' });
    // The sender went to smaller fragments: what was collected is of no use.
    expect(r.add(1, fh(2, 5), bytes(4, 2)).kind).toBe('more');
    expect(notes).toEqual(['fragment-restart']);
    expect(r.holding).toBe(4);
    // Another message ID: the old collection goes.
    r.add(2, fh(1, 2), bytes(1, 1));
    expect(r.messageId).toBe(2);
    expect(r.holding).toBe(1);
  });

  it('drops the whole collection when the message would be too big', () => {
    const budget = budgetOf();
    const { r } = reassembly(budget, new FakeClock(0), { ...limits, maxMessageBytes: 100 });
    r.add(1, fh(1, 3), bytes(60, 1));
    expect(r.add(1, fh(2, 3), bytes(60, 2))).toEqual({ kind: 'dropped', reason: 'fragment-too-big' });
    expect(r.holding).toBe(0);
    expect(budget.held).toBe(0);
  });

  it('shares one budget: a fragment that does not fit is dropped, the others keep theirs', () => {
    const budget = budgetOf(100);
    const a = reassembly(budget).r;
    const b = reassembly(budget).r;
    a.add(1, fh(1, 2), bytes(70, 1));
    expect(b.add(1, fh(1, 2), bytes(40, 1))).toEqual({ kind: 'dropped', reason: 'fragment-memory' });
    expect(b.add(1, fh(1, 2), bytes(30, 1)).kind).toBe('more');
    expect(budget.held).toBe(100);
    a.clear();
    expect(budget.held).toBe(30);
  });

  it('forgets an incomplete message after the timeout and gives its bytes back', () => {
    const budget = budgetOf();
    const { r, notes, clock } = reassembly(budget);
    r.add(1, fh(1, 2), bytes(10, 1));
    clock.advance(999);
    expect(budget.held).toBe(10);
    clock.advance(1);
    expect(notes).toEqual(['fragment-timeout']);
    expect(budget.held).toBe(0);
    expect(r.add(1, fh(2, 2), bytes(10, 2)).kind).toBe('more');
  });

  it('fuzz: never throws and never holds more than the budget and the message bound', () => {
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('frag' as const),
        id: fc.integer({ min: 0, max: 3 }),
        number: fc.integer({ min: 0, max: 12 }),
        total: fc.integer({ min: 0, max: 12 }),
        size: fc.integer({ min: 0, max: 900 }),
        fill: fc.integer({ min: 0, max: 255 }),
      }),
      fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 600 }) }),
      fc.record({ kind: fc.constant('clear' as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), fc.integer({ min: 0, max: 4000 }), (ops, memory) => {
        const budget = budgetOf(memory);
        const clock = new FakeClock(0);
        const sas = [reassembly(budget, clock).r, reassembly(budget, clock).r];
        for (const [k, o] of ops.entries()) {
          const r = sas[k % 2]!;
          if (o.kind === 'tick') clock.advance(o.ms);
          else if (o.kind === 'clear') r.clear();
          else {
            // fragmentHeader() refuses 0 and number > total before anything reaches add().
            if (o.total === 0 || o.number === 0 || o.number > o.total) continue;
            const v = r.add(o.id, fh(o.number, o.total, 33), Buffer.alloc(o.size, o.fill));
            if (v.kind === 'complete') {
              expect(v.chain.length).toBeLessThanOrEqual(limits.maxMessageBytes);
              expect(v.firstInner).toBe(33);
            }
          }
          expect(budget.held).toBeLessThanOrEqual(memory);
          expect(sas[0]!.holding + sas[1]!.holding).toBe(budget.held);
          for (const s of sas) expect(s.holding).toBeLessThanOrEqual(limits.maxMessageBytes);
        }
        for (const s of sas) s.clear();
        expect(budget.held).toBe(0);
      }),
      { seed: 17, numRuns: 400 },
    );
  });

  it('fuzz: any order of a message fragments, with duplicates, gives the message back exactly', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (pieces, order) => {
          const { r } = reassembly();
          const total = pieces.length;
          const seq = [...order.map((n) => n % total), ...pieces.map((_, i) => i)];
          let done: FragmentVerdict | undefined;
          const seen = new Set<number>();
          for (const i of seq) {
            const v = r.add(9, fh(i + 1, total, 41), Buffer.from(pieces[i]!));
            if (seen.has(i)) expect(v).toEqual({ kind: 'dropped', reason: 'fragment-duplicate' });
            seen.add(i);
            if (v.kind === 'complete') {
              done = v;
              break;
            }
          }
          expect(done?.kind).toBe('complete');
          if (done?.kind === 'complete')
            expect(done.chain.equals(Buffer.concat(pieces.map((p) => Buffer.from(p))))).toBe(true);
        },
      ),
      { seed: 19, numRuns: 300 },
    );
  });
});

describe('fragment headers from hostile bytes', () => {
  it('never throws on mangled fragments and refuses bad numbering', () => {
    const good = emitFragment(HEADER, 1, 2, PayloadType.IDi, Buffer.alloc(50, 1), new SkCipher(gcmKeys));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        fc.nat(),
        (edits, cut) => {
          const b = Buffer.from(good.subarray(0, Math.max(28, good.length - (cut % 60))));
          for (const [at, v] of edits) b[28 + (at % Math.max(1, b.length - 28))] = v;
          if (b.length >= 28) b.writeUInt32BE(b.length, 24);
          const p = parseIkeMessage(b);
          if (!p.ok) return;
          const h = fragmentHeader(p.value);
          if (!h.ok) {
            expect(['bad-type', 'truncated', 'bad-value']).toContain(h.reason);
            return;
          }
          expect(h.value.number).toBeGreaterThanOrEqual(1);
          expect(h.value.number).toBeLessThanOrEqual(h.value.total);
          expect(typeof openFragment(p.value, h.value, new SkCipher(gcmKeys)).ok).toBe('boolean');
        },
      ),
      { seed: 23, numRuns: 1000 },
    );
    for (const [number, total] of [
      [0, 2],
      [3, 2],
      [1, 0],
    ]) {
      const b = Buffer.from(good);
      b.writeUInt16BE(number!, 32);
      b.writeUInt16BE(total!, 34);
      expect(fragmentHeader(parse(b))).toEqual({ ok: false, reason: 'bad-value' });
    }
  });
});
