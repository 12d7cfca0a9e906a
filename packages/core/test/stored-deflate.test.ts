import { randomBytes } from 'node:crypto';
import { inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  incompressible,
  RawDeflater,
  storedDeflate,
  storedDeflateSize,
} from '../src/internal-api.js';

describe('storedDeflate', () => {
  it('writes stored blocks of at most 65 535 bytes that inflate back, the last one final', () => {
    for (const n of [0, 1, 65_535, 65_536, 3 * 65_535, 1024 * 1024]) {
      const data = randomBytes(n);
      const out = Buffer.alloc(storedDeflateSize(n) + 3, 0xaa);
      expect(storedDeflate(data, out, 3)).toBe(3 + storedDeflateSize(n));
      expect(out.subarray(0, 3).equals(Buffer.alloc(3, 0xaa))).toBe(true);
      const stream = out.subarray(3);
      expect(inflateRawSync(stream).equals(data)).toBe(true);
      // Walk the blocks: BFINAL only on the last, LEN and NLEN complements.
      let at = 0;
      let blocks = 0;
      for (;;) {
        const len = stream.readUInt16LE(at + 1);
        expect(stream.readUInt16LE(at + 3)).toBe(~len & 0xffff);
        expect(len).toBeLessThanOrEqual(65_535);
        blocks++;
        at += 5 + len;
        if (stream[at - 5 - len] === 1) break;
        expect(stream[at - 5 - len]).toBe(0);
      }
      expect(at).toBe(stream.length);
      expect(blocks).toBe(Math.max(1, Math.ceil(n / 65_535)));
    }
  });
});

describe('incompressible', () => {
  const deflater = new RawDeflater(1);
  const sizeOf =
    (b: Uint8Array) =>
    (at: number, n: number): number =>
      deflater.deflate(b.subarray(at, at + n)).length;

  it('takes random data, and not text, nor random data with a compressible stretch worth it', () => {
    const random = randomBytes(1024 * 1024);
    expect(incompressible(random.length, 1, sizeOf(random))).toBe(true);
    const text = Buffer.from('the quick brown fox jumps over the lazy dog '.repeat(30_000));
    expect(incompressible(text.length, 1, sizeOf(text))).toBe(false);
    // A fifth of the block compressible, wherever it lies: deflated.
    for (const at of [0, 100_000, 500_000, 1024 * 1024 - 200 * 1024]) {
      const mixed = Buffer.from(random);
      mixed.set(text.subarray(0, 200 * 1024), at);
      expect(incompressible(mixed.length, 1, sizeOf(mixed))).toBe(false);
    }
  });

  it('stores a block whose samples save under 5 % at level 1, and under 2 % above', () => {
    // Random bytes with every 32nd KiB text: the samples save about 2.7 %.
    const block = randomBytes(1024 * 1024);
    const text = Buffer.from('the quick brown fox jumps over the lazy dog '.repeat(30_000));
    for (let at = 0; at < block.length; at += 32 * 1024) block.set(text.subarray(0, 1024), at);
    let saved = 0;
    const step = Math.floor((block.length - 1024) / 31);
    for (let i = 0; i < 32; i++) saved += 1024 - sizeOf(block)(i * step, 1024);
    expect(saved / (32 * 1024)).toBeGreaterThan(0.02);
    expect(saved / (32 * 1024)).toBeLessThan(0.05);
    expect(incompressible(block.length, 1, sizeOf(block))).toBe(true);
    expect(incompressible(block.length, 6, sizeOf(block))).toBe(false);
  });

  it('never takes a block under 64 KiB, and asks for no sample then', () => {
    let asked = 0;
    expect(
      incompressible(64 * 1024 - 1, 1, () => {
        asked++;
        return 1 << 20;
      }),
    ).toBe(false);
    expect(asked).toBe(0);
  });

  it('makes RawDeflater store random blocks at every level but 0, and deflate the rest', () => {
    const random = randomBytes(512 * 1024);
    for (const level of [1, 6, 12]) {
      const out = new RawDeflater(level).deflate(random);
      const stored = Buffer.alloc(storedDeflateSize(random.length));
      storedDeflate(random, stored, 0);
      expect(out.equals(stored)).toBe(true);
    }
    // Level 0 is libdeflate's own (it stores too).
    expect(inflateRawSync(new RawDeflater(0).deflate(random)).equals(random)).toBe(true);
  });
});
