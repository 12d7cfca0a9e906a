import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decompressSync, zstdFrameSync, zstdFramer } from '../src/compression.js';
import { zstdAvailable } from '../src/index.js';
import { text } from './text.js';

const z = zlib as unknown as {
  zstdCompressSync: (data: Uint8Array, options?: object) => Buffer;
  constants: Record<string, number>;
};

/** oneShot is a fresh zstdCompressSync with an output buffer above the frame's size. */
function oneShot(data: Uint8Array, level: number): Buffer {
  return z.zstdCompressSync(data, {
    chunkSize: 2 * data.length + 65536,
    params: { [z.constants.ZSTD_c_compressionLevel ?? 100]: level },
  });
}

describe('zstdFramer', () => {
  const inputs = [
    Buffer.alloc(0),
    Buffer.from('x'),
    text(128 * 1024 - 1),
    text(128 * 1024),
    text(1024 * 1024),
    randomBytes(1024 * 1024),
    Buffer.alloc(1024 * 1024),
    new Uint8Array(text(300_000).buffer, 5, 200_000),
    text(3 * 1024 * 1024 + 17),
  ];

  it('makes, frame after frame on one context, the bytes of a fresh zstdCompressSync', () => {
    if (!zstdAvailable()) {
      expect(() => zstdFrameSync(Buffer.from('x'), 3)).toThrow(/zstd needs Node ≥ 22\.15/);
      return;
    }
    for (const level of [1, 3, 19]) {
      const frame = zstdFramer(z, level);
      // Twice through: a frame after a larger or a smaller one is the same.
      for (const input of [...inputs, ...inputs.slice().reverse()]) {
        const out = frame(input);
        expect(Buffer.from(out).equals(oneShot(input, level))).toBe(true);
        expect(decompressSync('zstd', out).equals(Buffer.from(input))).toBe(true);
        // Its own buffer, the frame's size: a worker transfers it as is.
        expect(out.byteOffset).toBe(0);
        expect(out.buffer.byteLength).toBe(out.byteLength);
      }
    }
    expect(
      zstdFrameSync(inputs[4] ?? Buffer.alloc(0), 3).equals(
        oneShot(inputs[4] ?? Buffer.alloc(0), 3),
      ),
    ).toBe(true);
  });

  it('falls back to a fresh zstdCompressSync per frame where node:zlib has no ZstdCompress stream', () => {
    if (!zstdAvailable()) {
      expect(() => zstdFrameSync(Buffer.from('x'), 3)).toThrow(/zstd needs Node/);
      return;
    }
    const frame = zstdFramer({ constants: z.constants, zstdCompressSync: z.zstdCompressSync }, 3);
    for (const input of inputs) {
      const out = frame(input);
      expect(Buffer.from(out).equals(oneShot(input, 3))).toBe(true);
      expect(out.buffer.byteLength).toBe(out.byteLength);
    }
  });

  it('makes every frame on its one kept context, and goes on with a new one after it was destroyed', () => {
    if (!zstdAvailable()) {
      expect(() => zstdFrameSync(Buffer.from('x'), 3)).toThrow(/zstd needs Node/);
      return;
    }
    const made: { destroy(): void }[] = [];
    let fresh = 0;
    const Zstd = (zlib as unknown as { ZstdCompress: new (o?: object) => { destroy(): void } })
      .ZstdCompress;
    const frame = zstdFramer(
      {
        constants: z.constants,
        // A fresh context per frame is the fallback: counted, never used here.
        zstdCompressSync: (data: Uint8Array, options?: object) => {
          fresh++;
          return z.zstdCompressSync(data, options);
        },
        ZstdCompress: class extends Zstd {
          constructor(o?: object) {
            super(o);
            made.push(this);
          }
        },
      },
      3,
    );
    const input = text(500_000);
    for (let i = 0; i < 5; i++)
      expect(Buffer.from(frame(input)).equals(oneShot(input, 3))).toBe(true);
    expect(made).toHaveLength(1);
    made[0]?.destroy();
    expect(Buffer.from(frame(input)).equals(oneShot(input, 3))).toBe(true);
    expect(made).toHaveLength(2);
    expect(fresh).toBe(0);
  });
});
