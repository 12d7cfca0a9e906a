import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gunzipSync, gzipSync, inflateRawSync } from 'node:zlib';
import { availableParallelism } from 'node:os';
import { layerFromBytes } from '@lading/core';
import { blockGzipHeader, blockGzipSync } from '@lading/core/internal';
import { createGzipStream, streamLayer } from '../src/index.js';
import { defaultGzipLevel, gzipBlockSize, resolveCompression } from '../src/compression.js';
import { collect, makeTar, pseudoRandom, run, textish } from './helpers.js';

function corpus(): Buffer {
  // Mixed content, not a multiple of the block size.
  return Buffer.concat([
    textish(2 * gzipBlockSize + 12345),
    pseudoRandom(gzipBlockSize + 999),
    textish(777),
  ]);
}

/**
 * memberEnd is where the gzip member starting at `off` ends: its deflate
 * stream is inflated (zlib reports how many input bytes it used), plus the
 * 8-byte trailer.
 */
function memberEnd(buf: Buffer, off: number): number {
  expect([...buf.subarray(off, off + 10)]).toEqual([...blockGzipHeader]);
  const { engine } = inflateRawSync(buf.subarray(off + 10), { info: true }) as unknown as {
    engine: { bytesWritten: number };
  };
  return off + 10 + engine.bytesWritten + 8;
}

function chunked(buf: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

async function gz(input: Buffer, opts: Parameters<typeof createGzipStream>[0], chunk = 65536) {
  const s = createGzipStream(opts);
  const [out] = await Promise.all([collect(s), pipeline(chunked(input, chunk), s)]);
  return out;
}

describe('createGzipStream', () => {
  it('stream mode gives the same bytes as gzipSync at the same level, whatever the chunking', async () => {
    const input = corpus();
    for (const level of [1, 6]) {
      const ref = gzipSync(input, { level });
      expect((await gz(input, { level, gzipMode: 'stream' }, 1000)).equals(ref)).toBe(true);
      expect((await gz(input, { level, gzipMode: 'stream' }, 300_000)).equals(ref)).toBe(true);
    }
  });

  it('blocks mode gives byte-identical output for 1, 2 and 4 workers', async () => {
    const input = corpus();
    const one = await gz(input, { gzipMode: 'blocks', workers: 1 });
    const two = await gz(input, { workers: 2 }, 12345);
    const four = await gz(input, { workers: 4 }, 1 << 20);
    expect(two.equals(one)).toBe(true);
    expect(four.equals(one)).toBe(true);
    expect(gunzipSync(one).equals(input)).toBe(true);
    // It is not the single-stream encoding (blocks are flushed independently).
    expect(one.equals(gzipSync(input, { level: 6 }))).toBe(false);
  });

  it('defaults to blocks mode at level 1 on every core: the bytes of blockGzipSync, for any worker count', async () => {
    const input = corpus();
    const ref = blockGzipSync(input, defaultGzipLevel);
    expect(resolveCompression()).toEqual({
      compression: 'gzip',
      level: 1,
      workers: availableParallelism(),
      gzipMode: 'blocks',
    });
    expect((await gz(input, {}, 5000)).equals(ref)).toBe(true);
    for (const workers of [1, 2, 4]) {
      expect((await gz(input, { workers }, 70_000)).equals(ref)).toBe(true);
    }
    expect(gunzipSync(ref).equals(input)).toBe(true);
  });

  it('blocks mode output passes gzip -t, including empty input and exact block multiples', async () => {
    for (const input of [Buffer.alloc(0), textish(gzipBlockSize * 2), textish(10)]) {
      const out = await gz(input, { workers: 2 });
      expect(gunzipSync(out).equals(input)).toBe(true);
      const g = await run('gzip', ['-t'], out);
      expect(g.code).toBe(0);
    }
  });

  it('gives the same layer digest by default and for workers 1, 2 and 4, and GNU tar reads the layer', async () => {
    const tar = await makeTar([
      { name: 'big', body: corpus() },
      { name: 'small', body: 'x' },
    ]);
    const diffId = await layerFromBytes(tar).diffId();
    const digests: string[] = [];
    let blob: Buffer = Buffer.alloc(0);
    for (const o of [{}, { workers: 1 }, { workers: 2 }, { workers: 4 }]) {
      const layer = streamLayer(chunked(tar, 100_000), o);
      blob = await collect(layer.compressed());
      digests.push(await layer.digest());
      expect(await layer.diffId()).toBe(diffId);
    }
    expect(new Set(digests).size).toBe(1);
    // A buffered layer of the same tar compresses the same way by default.
    expect(await layerFromBytes(tar).digest()).toBe(digests[0]);
    const t = await run('tar', ['-tzf', '-'], blob);
    expect(t.code).toBe(0);
    expect(t.stdout.split('\n').filter(Boolean)).toEqual(['big', 'small']);
  });

  it('blocks mode writes one gzip member per 1 MiB block, each a whole gzip stream of its block, at every level', async () => {
    const input = corpus();
    for (const level of [0, 1, 6, 9]) {
      const out = await gz(input, { level, workers: 2 }, 77_777);
      expect(out.equals(blockGzipSync(input, level))).toBe(true);
      // Walk the members: each gunzips alone to the next block of the input.
      let off = 0;
      let members = 0;
      for (let at = 0; at < input.length; at += gzipBlockSize) {
        const block = input.subarray(at, at + gzipBlockSize);
        const end = memberEnd(out, off);
        expect(gunzipSync(out.subarray(off, end)).equals(block)).toBe(true);
        off = end;
        members++;
      }
      expect(off).toBe(out.length);
      expect(members).toBe(Math.ceil(input.length / gzipBlockSize));
    }
  });

  it('blocks mode emits each member as one chunk, so a reader never has pieces to join', async () => {
    const input = corpus();
    const s = createGzipStream({ level: 1, workers: 2 });
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    await pipeline(chunked(input, 65536), s);
    expect(chunks).toHaveLength(Math.ceil(input.length / gzipBlockSize));
    let at = 0;
    for (const c of chunks) {
      expect(memberEnd(c, 0)).toBe(c.length);
      expect(gunzipSync(c).equals(input.subarray(at, at + gzipBlockSize))).toBe(true);
      at += gzipBlockSize;
    }
  });

  it('rejects bad options with INVALID_ARGUMENT', () => {
    expect(() => createGzipStream({ level: 11 })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(() => createGzipStream({ workers: 0 })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });
});
