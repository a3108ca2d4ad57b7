import { describe, expect, it } from 'vitest';
import { SlotBuffer, SpanList } from '../../../src/io/slots.ts';

describe('SlotBuffer', () => {
  it('places packet i at i*slotSize + headroom and keeps slots apart', () => {
    const s = new SlotBuffer(4, 256, 64);
    expect(s.bytes.length).toBe(1024);
    expect(s.offset(0)).toBe(64);
    expect(s.offset(3)).toBe(3 * 256 + 64);
    expect(s.capacity).toBe(192);
    expect(s.put(1, new Uint8Array([1, 2, 3]))).toBe(true);
    expect(s.put(2, new Uint8Array(192).fill(9))).toBe(true);
    expect([...s.packet(1)]).toEqual([1, 2, 3]);
    // The bytes around slot 1's packet are untouched: its headroom and the end of slot 0.
    expect(s.bytes[s.offset(1) - 1]).toBe(0);
    expect(s.bytes[s.offset(1) + 3]).toBe(0);
    expect(s.packet(2).every((b) => b === 9)).toBe(true);
    expect(s.bytes[3 * 256 + 63]).toBe(0); // slot 3's headroom: slot 2's packet ended exactly at its slot end
  });

  it('refuses packets that do not fit and slots that do not exist', () => {
    const s = new SlotBuffer(2, 256, 64);
    expect(s.put(0, new Uint8Array(193))).toBe(false);
    expect(s.put(2, new Uint8Array(1))).toBe(false);
    expect(s.put(-1, new Uint8Array(1))).toBe(false);
  });

  it('rejects geometry the native reader would reject', () => {
    expect(() => new SlotBuffer(0)).toThrow(RangeError);
    expect(() => new SlotBuffer(1025)).toThrow(RangeError);
    expect(() => new SlotBuffer(4, 128, 64)).toThrow(RangeError);
  });
});

describe('SpanList', () => {
  it('keeps (offset, length) pairs until full and can be reused', () => {
    const l = new SpanList(2);
    expect(l.push(10, 20)).toBe(true);
    expect(l.push(30, 40)).toBe(true);
    expect(l.push(50, 60)).toBe(false);
    expect(l.count).toBe(2);
    expect([...l.pairs]).toEqual([10, 20, 30, 40]);
    expect(l.offset(1)).toBe(30);
    expect(l.length(1)).toBe(40);
    l.clear();
    expect(l.count).toBe(0);
    l.push(1, 2);
    expect([l.offset(0), l.length(0)]).toEqual([1, 2]);
  });
});
