import { describe, expect, it } from 'vitest';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { createDecompressor, isLadingError, zstdAvailable } from '@lading/core';
import { decompressionError } from '@lading/core/internal';
import { ZstdFrames } from '../src/zstd-frames.js';

const magic = [0x28, 0xb5, 0x2f, 0xfd];

function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];
}

/** blockHeader is a 3-byte block header: last flag, type (0 raw, 1 RLE, 2 compressed), size. */
function blockHeader(last: boolean, type: number, size: number): number[] {
  const v = (last ? 1 : 0) | (type << 1) | (size << 3);
  return [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff];
}

/**
 * Frames made by hand (RFC 8878 §3.1.1), each holding `content`: raw
 * blocks, an RLE block, several header shapes (single segment or a window
 * descriptor; dictionary ids of 1, 2 and 4 bytes; content sizes of 0, 1,
 * 2, 4 and 8 bytes) and a checksum.
 */
function frames(): { name: string; bytes: Buffer }[] {
  const raw = (content: number[]) => [...blockHeader(true, 0, content.length), ...content];
  const two = [...blockHeader(false, 0, 3), 1, 2, 3, ...blockHeader(true, 1, 1000), 7];
  return [
    // single segment, 1-byte content size
    { name: 'single', bytes: Buffer.from([...magic, 0x20, 5, ...raw([1, 2, 3, 4, 5])]) },
    // window descriptor, no content size, two blocks (raw, then RLE)
    { name: 'window', bytes: Buffer.from([...magic, 0x00, 0x50, ...two]) },
    // 2-byte content size, 1-byte dictionary id, checksum
    {
      name: 'checksum',
      bytes: Buffer.from([...magic, 0x45, 0x50, 9, 3, 0, ...raw([1, 2, 3]), 1, 2, 3, 4]),
    },
    // 4-byte content size, 2-byte dictionary id
    { name: 'did2', bytes: Buffer.from([...magic, 0x82, 0x50, 1, 2, ...u32(0), ...raw([])]) },
    // 8-byte content size, 4-byte dictionary id, single segment
    {
      name: 'fcs8',
      bytes: Buffer.from([...magic, 0xe3, ...u32(9), 2, 0, 0, 0, 0, 0, 0, 0, ...raw([9, 9])]),
    },
    // a skippable frame
    { name: 'skippable', bytes: Buffer.from([...u32(0x184d2a5e), ...u32(3), 0, 0, 0]) },
  ];
}

/** scanAll feeds `bytes` in chunks of `size` and ends; it answers the error, if any. */
function scanAll(bytes: Buffer, size: number): (Error & { code?: string }) | undefined {
  const f = new ZstdFrames();
  try {
    for (let i = 0; i < bytes.length; i += size) f.scan(bytes.subarray(i, i + size));
    f.end();
  } catch (err) {
    return err as Error & { code?: string };
  }
  return undefined;
}

function sink(): Writable {
  return new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });
}

describe('ZstdFrames', () => {
  it('follows frames of every header shape, whatever the chunk sizes', () => {
    const all = Buffer.concat(frames().map((f) => f.bytes));
    for (const size of [1, 2, 3, 5, 7, 64, all.length]) expect(scanAll(all, size)).toBeUndefined();
    for (const f of frames()) expect(scanAll(f.bytes, 1), f.name).toBeUndefined();
  });

  it('refuses what follows the last frame, naming where it starts', () => {
    const all = Buffer.concat(frames().map((f) => f.bytes));
    for (const tail of [Buffer.alloc(512), Buffer.from('garbage!'), Buffer.alloc(4)]) {
      for (const size of [1, 3, 4096]) {
        const err = scanAll(Buffer.concat([all, tail]), size);
        expect(err?.code).toBe('ZSTD_error_prefix_unknown');
        expect(err?.message).toBe(
          `data that is not a zstd frame after the last frame, at byte ${all.length}`,
        );
      }
    }
    // Fewer bytes than a frame's magic.
    const short = scanAll(Buffer.concat([all, Buffer.from([0, 0, 0])]), 5);
    expect(short?.code).toBe('ZSTD_error_prefix_unknown');
    expect(short?.message).toBe('3 bytes that are not a zstd frame after the last frame');
    expect(scanAll(Buffer.from('not zstd at all'), 4)?.message).toBe('not a zstd stream');
  });

  it('refuses a stream that ends inside a frame, or holds none', () => {
    for (const f of frames()) {
      for (let cut = 1; cut < f.bytes.length; cut++) {
        const err = scanAll(f.bytes.subarray(0, cut), 2);
        expect(err?.code, `${f.name} cut at ${cut}`).toMatch(/^ZSTD_error_/);
      }
    }
    expect(scanAll(Buffer.alloc(0), 1)?.code).toBe('ZSTD_error_srcSize_wrong');
  });

  it('makes the zstd decompressor refuse data after the last frame (Node drops it), or zstd is UNSUPPORTED', async () => {
    if (!zstdAvailable()) {
      expect(() => createDecompressor('zstd')).toThrow(
        expect.objectContaining({ code: 'UNSUPPORTED' }),
      );
      return;
    }
    const z = zlib as unknown as {
      zstdCompressSync: (b: Uint8Array, o?: object) => Buffer;
      constants: Record<string, number>;
    };
    const content = Buffer.from('lading '.repeat(300_000));
    const checksum = { params: { [z.constants.ZSTD_c_checksumFlag ?? 201]: 1 } };
    const blob = Buffer.concat([
      z.zstdCompressSync(content.subarray(0, 1_000_000)),
      z.zstdCompressSync(content.subarray(1_000_000), checksum),
      // (the others name a dictionary or carry a made-up checksum)
      ...frames()
        .filter((f) => ['single', 'window', 'skippable'].includes(f.name))
        .map((f) => f.bytes),
    ]);
    const read = async (bytes: Buffer): Promise<unknown> => {
      const parts: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += 65_536) parts.push(bytes.subarray(i, i + 65_536));
      return pipeline(Readable.from(parts), createDecompressor('zstd'), sink()).then(
        () => undefined,
        (e: unknown) => e,
      );
    };
    expect(await read(blob)).toBeUndefined();
    for (const tail of [Buffer.alloc(1024), Buffer.from('trailing garbage')]) {
      const typed = decompressionError(await read(Buffer.concat([blob, tail])), 'layer 0');
      expect(isLadingError(typed, 'INVALID_LAYER')).toBe(true);
      expect((typed as Error).message).toBe(
        `layer 0 does not decompress: data that is not a zstd frame after the last frame, at byte ${blob.length}`,
      );
    }
  });
});
