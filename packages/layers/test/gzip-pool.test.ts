import { describe, expect, it } from 'vitest';
import * as zlib from 'node:zlib';
import { Readable } from 'node:stream';
import { createDecompressor, zstdAvailable } from '@lading/core';
import { blockGzipHeader, blockGzipSync, storedDeflateSize } from '@lading/core/internal';
import { createHash, randomBytes } from 'node:crypto';
import { runInNewContext } from 'node:vm';
import { DeflatePool } from '../src/internal/gzip-pool.js';
import { allocatedBlock, exposeGc } from '../src/internal/reclaim.js';
import { collect, run, textish } from './helpers.js';

const MiB = 1024 * 1024;
const text = textish(MiB);

/** block returns a fresh 1 MiB block (it owns its ArrayBuffer, so it can be transferred). */
function block(): Uint8Array {
  const b = new Uint8Array(new ArrayBuffer(MiB));
  b.set(text);
  return b;
}

describe('DeflatePool', () => {
  it('starts one worker for a producer that waits for each block', async () => {
    const pool = new DeflatePool(4, 'gzip');
    expect(pool.started).toBe(0);
    for (let i = 0; i < 12; i++) {
      const r = await pool.deflate(block(), MiB, 1);
      expect(zlib.gunzipSync(r.output).equals(text)).toBe(true);
      expect(pool.window).toBe(3);
    }
    expect(pool.started).toBe(1);
  });

  it('starts more workers while blocks wait on every running one, up to its size', async () => {
    const pool = new DeflatePool(3, 'gzip');
    const first: number[] = [];
    // A producer always ahead of the workers: four blocks more than the window.
    const free = Array.from({ length: 10 }, block);
    const inFlight: Promise<unknown>[] = [];
    for (let i = 0; i < 240; i++) {
      while (inFlight.length >= pool.window + 4 || free.length === 0) await inFlight.shift();
      inFlight.push(
        pool.deflate(free.pop()!, MiB, 1).then((r) => {
          if (first.length === 0) first.push(pool.started);
          expect(zlib.gunzipSync(r.output).equals(text)).toBe(true);
          free.push(r.input);
        }),
      );
    }
    await Promise.all(inFlight);
    expect(first[0]).toBeLessThan(3);
    expect(pool.started).toBe(3);
    expect(pool.window).toBe(6);
  });

  it('keeps results in the order of their blocks, whatever worker took them', async () => {
    const pool = new DeflatePool(2, 'gzip');
    const inputs = Array.from({ length: 16 }, (_, i) => {
      const b = block();
      b[0] = i;
      return b;
    });
    const copies = inputs.map((b) => Buffer.from(b));
    const results = await Promise.all(inputs.map((b, i) => pool.deflate(b, MiB - i, 1)));
    results.forEach((r, i) => {
      expect(zlib.gunzipSync(r.output).equals(copies[i]!.subarray(0, MiB - i))).toBe(true);
      expect(r.input.byteLength).toBe(MiB);
    });
  });
});

describe('incompressible blocks on a worker', () => {
  it('are stored without deflating, as blockGzipSync writes them; partly and wholly compressible ones are deflated', async () => {
    const pool = new DeflatePool(2, 'gzip');
    const random = randomBytes(MiB);
    // Random data with a compressible fifth.
    const mixed = Buffer.from(random);
    mixed.set(text.subarray(0, 200 * 1024), 160 * 1024);
    const stored = blockGzipHeader.length + storedDeflateSize(MiB) + 8;
    for (const level of [1, 6, 9]) {
      for (const [input, isStored] of [
        [random, true],
        [mixed, false],
        [text, false],
      ] as const) {
        const b = new Uint8Array(new ArrayBuffer(MiB));
        b.set(input);
        const r = await pool.deflate(b, MiB, level);
        expect(r.output.equals(blockGzipSync(input, level))).toBe(true);
        expect(zlib.gunzipSync(r.output).equals(input)).toBe(true);
        expect(r.output.length === stored).toBe(isStored);
      }
    }
    // GNU gzip reads a stored member.
    const b = new Uint8Array(new ArrayBuffer(MiB));
    b.set(random);
    const r = await pool.deflate(b, MiB, 1);
    const g = await run('sh', ['-c', 'gzip -dc | sha256sum'], r.output);
    expect(g.stderr).toBe('');
    expect(g.stdout.split(' ')[0]).toBe(createHash('sha256').update(random).digest('hex'));
  });
});

describe('zstd blocks on a worker', () => {
  it('free their native contexts: the worker runs a full collection every 16 frames', async () => {
    const pool = new DeflatePool(1, 'zstd');
    let b = block();
    if (!zstdAvailable()) {
      await expect(pool.deflate(b, MiB, 3)).rejects.toThrow(/gzip worker failed/);
      return;
    }
    // Node frees each zstdCompressSync context only when a full collection
    // finds its handle (measured, 400 frames on one worker: RSS +84 MiB
    // without the worker's collections on Node 26, +20 MiB with them).
    for (let i = 0; i < 40; i++) {
      const r = await pool.deflate(b, MiB, 3);
      const frame = Readable.from([r.output]).pipe(createDecompressor('zstd'));
      expect((await collect(frame)).equals(text)).toBe(true);
      b = r.input;
    }
    expect(pool.collections).toBe(2);
  });
});

describe('worker start-up', () => {
  it('holds --expose-gc only while a zstd worker starts; a gzip worker starts without it', async () => {
    const typeofGc = () => runInNewContext('typeof gc') as string;
    const gzip = new DeflatePool(1, 'gzip').deflate(block(), MiB, 1);
    // The worker is created synchronously, with the first block.
    expect(typeofGc()).toBe('undefined');
    expect(zlib.gunzipSync((await gzip).output).equals(text)).toBe(true);
    const zstd = new DeflatePool(1, 'zstd').deflate(block(), MiB, 3);
    expect(typeofGc()).toBe('function');
    await zstd.catch(() => undefined); // (rejected on a Node without zstd)
    expect(typeofGc()).toBe('undefined');
  });
});

describe('allocatedBlock', () => {
  it('frees dead blocks while they are young, and leaves no gc global behind', async () => {
    // 256 dead 1 MiB blocks, as a fast consumer leaves them. Without the
    // collections V8 let them pile up to its external-memory limit (63 MiB
    // on Node 20, 74 MiB on Node 26).
    const base = process.memoryUsage().arrayBuffers;
    let peak = 0;
    for (let i = 0; i < 256; i++) {
      const b = new Uint8Array(new ArrayBuffer(MiB));
      b[0] = i;
      allocatedBlock(b.byteLength);
      await new Promise((resolve) => setImmediate(resolve));
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
    }
    expect(peak).toBeLessThan(24 * MiB);
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
    expect(runInNewContext('typeof gc')).toBe('undefined');
  });
});

describe('exposeGc', () => {
  it('lets a hold nobody releases (a worker that never came online) lapse after its time', async () => {
    const lapsing = exposeGc(50);
    expect(runInNewContext('typeof gc')).toBe('function');
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(runInNewContext('typeof gc')).toBe('undefined');
    // Releasing it late changes nothing; the count of holds stays right.
    lapsing();
    const held = exposeGc();
    expect(runInNewContext('typeof gc')).toBe('function');
    held();
    expect(runInNewContext('typeof gc')).toBe('undefined');
  });
});
