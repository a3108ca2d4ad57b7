/** fast-check generators for IKE payloads and messages. */
import fc from 'fast-check';
import { PayloadType } from '../../../src/ike/constants.ts';
import type { Payload } from '../../../src/ike/payloads.ts';
import type { Proposal, Transform, TransformAttribute } from '../../../src/ike/sa-payload.ts';
import type { TrafficSelectorPayloadEntry } from '../../../src/ike/ts-payload.ts';

const bytes = (min: number, max: number): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ minLength: min, maxLength: max }).map((u) => Buffer.from(u));

const attribute: fc.Arbitrary<TransformAttribute> = fc.oneof(
  fc.record({
    type: fc.integer({ min: 0, max: 0x7fff }),
    tv: fc.constant(true as const),
    value: fc.integer({ min: 0, max: 0xffff }),
  }),
  fc.record({
    type: fc.integer({ min: 0, max: 0x7fff }),
    tv: fc.constant(false as const),
    value: bytes(0, 12),
  }),
);

const transformArb: fc.Arbitrary<Transform> = fc.record({
  type: fc.integer({ min: 0, max: 255 }),
  id: fc.integer({ min: 0, max: 0xffff }),
  attributes: fc.array(attribute, { maxLength: 3 }),
});

export const proposalArb: fc.Arbitrary<Proposal> = fc.record({
  number: fc.integer({ min: 0, max: 255 }),
  protocol: fc.integer({ min: 0, max: 255 }),
  spi: fc.oneof(bytes(0, 0), bytes(4, 4), bytes(8, 8)),
  transforms: fc.array(transformArb, { minLength: 0, maxLength: 6 }),
});

const tsArb: fc.Arbitrary<TrafficSelectorPayloadEntry> = fc.record({
  kind: fc.constant('ipv4' as const),
  protocol: fc.integer({ min: 0, max: 255 }),
  startPort: fc.integer({ min: 0, max: 0xffff }),
  endPort: fc.integer({ min: 0, max: 0xffff }),
  startAddress: fc.integer({ min: 0, max: 0xffffffff }),
  endAddress: fc.integer({ min: 0, max: 0xffffffff }),
});

export const payloadArb: fc.Arbitrary<Payload> = fc.oneof(
  fc.record({
    type: fc.constant(PayloadType.SA),
    proposals: fc.array(proposalArb, { minLength: 1, maxLength: 4 }),
  }),
  fc.record({
    type: fc.constant(PayloadType.KE),
    group: fc.integer({ min: 0, max: 0xffff }),
    data: bytes(0, 300),
  }),
  fc.record({
    type: fc.constantFrom(PayloadType.IDi, PayloadType.IDr),
    idType: fc.integer({ min: 0, max: 255 }),
    data: bytes(0, 40),
  }),
  fc.record({
    type: fc.constantFrom(PayloadType.CERT, PayloadType.CERTREQ),
    encoding: fc.integer({ min: 0, max: 255 }),
    data: bytes(0, 100),
  }),
  fc.record({
    type: fc.constant(PayloadType.AUTH),
    method: fc.integer({ min: 0, max: 255 }),
    data: bytes(0, 80),
  }),
  fc.record({ type: fc.constant(PayloadType.NONCE), data: bytes(16, 256) }),
  fc.record({
    type: fc.constant(PayloadType.NOTIFY),
    protocol: fc.integer({ min: 0, max: 255 }),
    spi: fc.oneof(bytes(0, 0), bytes(4, 4), bytes(8, 8)),
    notifyType: fc.integer({ min: 0, max: 0xffff }),
    data: bytes(0, 40),
  }),
  fc.integer({ min: 0, max: 6 }).chain((n) =>
    fc.record({
      type: fc.constant(PayloadType.DELETE),
      protocol: fc.integer({ min: 0, max: 255 }),
      spiSize: fc.constant(4),
      spis: fc.array(bytes(4, 4), { minLength: n, maxLength: n }),
    }),
  ),
  fc.record({ type: fc.constant(PayloadType.VENDOR), data: bytes(0, 40) }),
  fc.record({
    type: fc.constantFrom(PayloadType.TSi, PayloadType.TSr),
    selectors: fc.array(tsArb, { minLength: 1, maxLength: 5 }),
  }),
  fc.record({
    type: fc.constantFrom(47, 48, 99, 200),
    critical: fc.boolean(),
    body: bytes(0, 40),
    opaque: fc.constant(true as const),
  }),
);
