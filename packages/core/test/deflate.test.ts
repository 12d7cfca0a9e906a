import { randomBytes } from 'node:crypto';
import { inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { RawDeflater, blockGzipSync } from '../src/internal-api.js';
import { decompressSync } from '../src/compression.js';
import { text } from './text.js';

describe('RawDeflater (libdeflate, WebAssembly)', () => {
  it('deflates inputs of every size into raw deflate that inflates back, growing its buffers as needed', () => {
    const d = new RawDeflater(1);
    for (const input of [
      Buffer.alloc(0),
      Buffer.from('x'),
      text(100_000),
      randomBytes(3 * 1024 * 1024 + 17),
      text(10),
    ]) {
      expect(inflateRawSync(d.deflate(input)).equals(input)).toBe(true);
    }
  });

  it('gives the same bytes from separate instances, and level 0 stores', () => {
    const input = Buffer.concat([text(300_000), randomBytes(50_000)]);
    for (const level of [1, 6, 9, 12]) {
      const a = new RawDeflater(level).deflate(input);
      expect(new RawDeflater(level).deflate(input).equals(a)).toBe(true);
      expect(inflateRawSync(a).equals(input)).toBe(true);
    }
    const stored = new RawDeflater(0).deflate(input);
    expect(stored.length).toBeGreaterThanOrEqual(input.length);
    expect(inflateRawSync(stored).equals(input)).toBe(true);
  });

  it('rejects a level outside 0–12 with INVALID_ARGUMENT', () => {
    for (const level of [-1, 13, 1.5]) {
      expect(() => new RawDeflater(level)).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
    }
  });
});

describe('blockGzipSync', () => {
  it('is one gzip member per 1 MiB block that gunzips back whole, empty input included', () => {
    for (const input of [
      Buffer.alloc(0),
      text(10),
      text(2 * 1024 * 1024),
      text(2 * 1024 * 1024 + 5),
    ]) {
      const out = blockGzipSync(input, 1);
      expect(decompressSync('gzip', out).equals(input)).toBe(true);
      let members = 0;
      for (let i = out.indexOf(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])); i >= 0;) {
        members++;
        i = out.indexOf(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), i + 1);
      }
      expect(members).toBe(Math.max(1, Math.ceil(input.length / (1024 * 1024))));
    }
  });
});
