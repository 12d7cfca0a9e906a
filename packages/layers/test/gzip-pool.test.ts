import { describe, expect, it } from 'vitest';
import * as zlib from 'node:zlib';
import { Readable } from 'node:stream';
import { createDecompressor, zstdAvailable } from '@lading/core';
import { blockGzipHeader, blockGzipSync, storedDeflateSize } from '@lading/core/internal';
import { createHash, randomBytes } from 'node:crypto';
import { runInNewContext } from 'node:vm';
import { DeflatePool } from '../src/internal/gzip-pool.js';
import { allocatedBlock } from '../src/internal/reclaim.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { collect, run, tempDir, textish } from './helpers.js';

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
      expect(r.output.equals(blockGzipSync(text, 1))).toBe(true);
      // The first block is compressed here and starts no worker; the second
      // starts one.
      expect(pool.started).toBe(i === 0 ? 0 : 1);
      expect(pool.window).toBe(i === 0 ? 1 : 3);
    }
    expect(pool.started).toBe(1);
  });

  it('compresses a lone block on the calling thread, with the workers’ bytes, and starts no worker', async () => {
    for (const level of [1, 6]) {
      const pool = new DeflatePool(2, 'gzip');
      const b = block();
      const r = await pool.deflate(b, MiB - 3, level);
      expect(pool.started).toBe(0);
      expect(r.input).toBe(b);
      expect(r.output.equals(blockGzipSync(text.subarray(0, MiB - 3), level))).toBe(true);
    }
  });

  it('does not keep the process alive with a worker it started and never gave a block', async () => {
    const ports = () => process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;
    const before = ports();
    const pool = new DeflatePool(1, 'gzip');
    // Two blocks: the second starts the worker; both are compressed here.
    const results = [pool.deflate(block(), MiB, 1), pool.deflate(block(), MiB, 1)];
    await Promise.all(results);
    expect(pool.started).toBe(1);
    // (A 'message' listener added after unref() refs the worker's port again.)
    expect(ports()).toBe(before);
  });

  it('compresses at most four blocks here before a worker is online; the rest wait for it', async () => {
    const pool = new DeflatePool(1, 'gzip');
    const results = Array.from({ length: 8 }, () => pool.deflate(block(), MiB, 1));
    // All eight were given at once: four done here, four posted to the
    // worker the second one started (not online yet: it cannot be, the
    // thread was never free).
    expect(pool.started).toBe(1);
    for (const r of await Promise.all(results))
      expect(r.output.equals(blockGzipSync(text, 1))).toBe(true);
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
  it('are made one after the other by the same worker with the bytes of a fresh zstdCompressSync each', async () => {
    const pool = new DeflatePool(1, 'zstd');
    let b = block();
    if (!zstdAvailable()) {
      await expect(pool.deflate(b, MiB, 3)).rejects.toThrow(/zstd/);
      return;
    }
    const zstd = zlib as unknown as {
      zstdCompressSync: (data: Uint8Array, options: object) => Buffer;
      constants: Record<string, number>;
    };
    const oneShot = (data: Uint8Array, level: number) =>
      zstd.zstdCompressSync(data, {
        chunkSize: 2 * MiB,
        params: { [zstd.constants.ZSTD_c_compressionLevel ?? 100]: level },
      });
    // Text, random bytes, zeros and short blocks, at two levels, one after
    // the other on the same worker: each frame is what a fresh context makes.
    const random = randomBytes(MiB);
    const contents = [
      text,
      random,
      new Uint8Array(MiB),
      text.subarray(0, 12345),
      random.subarray(7),
    ];
    for (let i = 0; i < 20; i++) {
      const data = contents[i % contents.length] ?? text;
      const level = i % 3 === 0 ? 9 : 3;
      b.set(data);
      const r = await pool.deflate(b, data.length, level);
      expect(r.output.equals(oneShot(data, level))).toBe(true);
      const frame = Readable.from([r.output]).pipe(createDecompressor('zstd'));
      expect((await collect(frame)).equals(Buffer.from(data))).toBe(true);
      b = r.input;
    }
  });
});

describe('worker start-up', () => {
  it('starts gzip and zstd workers without giving any context a gc global', async () => {
    const typeofGc = () => runInNewContext('typeof gc') as string;
    for (const [codec, level] of [
      ['gzip', 1],
      ['zstd', 3],
    ] as const) {
      // The worker is created synchronously, with the second block.
      const pool = new DeflatePool(1, codec);
      const jobs = [pool.deflate(block(), MiB, level), pool.deflate(block(), MiB, level)];
      expect(pool.started).toBe(1);
      expect(typeofGc()).toBe('undefined');
      const results = await Promise.allSettled(jobs); // (zstd: rejected on a Node without it)
      if (codec === 'gzip' || zstdAvailable()) {
        for (const r of results) {
          expect(r.status).toBe('fulfilled');
          if (r.status === 'fulfilled') {
            const plain = Readable.from([r.value.output]).pipe(createDecompressor(codec));
            expect((await collect(plain)).equals(text)).toBe(true);
          }
        }
      }
      expect(typeofGc()).toBe('undefined');
    }
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

describe('the pool embedded in node --input-type=module -e', () => {
  it('starts its workers (their inline CommonJS source is not read as a module)', async () => {
    const dist = new URL('../dist/index.js', import.meta.url).href;
    const dir = tempDir('lading-esm-');
    writeFileSync(
      join(dir, 'big.txt'),
      Buffer.alloc(8 << 20, 'lading, embedded in an ES module. '),
    );
    // 8 MiB of text: enough blocks that both workers get some
    const script = `const { layerFromDirectory } = await import(${JSON.stringify(dist)});
console.log(await layerFromDirectory(${JSON.stringify(dir)}, { workers: 2 }).digest());`;
    const r = await run(process.execPath, ['--input-type=module', '-e', script]);
    expect(r.stderr).not.toContain('require is not defined');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});

describe('evalWorkerExecArgv', () => {
  it('drops --input-type in both spellings and keeps the other flags', async () => {
    const { evalWorkerExecArgv } = await import('@lading/core/internal');
    expect(
      evalWorkerExecArgv([
        '--input-type=module',
        '--max-old-space-size=100',
        '--input-type',
        'commonjs',
        '-e',
        'x',
      ]),
    ).toEqual(['--max-old-space-size=100', '-e', 'x']);
  });
});
