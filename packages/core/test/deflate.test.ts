import { randomBytes } from 'node:crypto';
import { inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { RawDeflater, blockGzipSync } from '../src/internal-api.js';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createDecompressor, decompressSync } from '../src/compression.js';
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

describe('decompressSync and createDecompressor (gzip)', () => {
  it('read past zero padding after the last member, and refuse anything else after it', async () => {
    const gz = blockGzipSync(text(3 * 1024 * 1024), 1);
    const read = (bytes: Buffer) =>
      new Promise<string>((resolve) => {
        const d = createDecompressor('gzip');
        let n = 0;
        d.on('data', (c: Buffer) => {
          n += c.length;
        });
        d.on('error', (e: Error & { code?: string }) => {
          resolve(`${e.code ?? ''}: ${e.message}`);
        });
        d.on('end', () => {
          resolve(String(n));
        });
        // In 64 KiB writes, as from a socket: the garbage lands in a later
        // chunk than the zero byte Node stops at.
        for (let at = 0; at < bytes.length; at += 65536) d.write(bytes.subarray(at, at + 65536));
        d.end();
      });
    const size = String(3 * 1024 * 1024);
    expect(await read(gz)).toBe(size);
    expect(await read(Buffer.concat([gz, Buffer.alloc(100_000)]))).toBe(size);
    expect(decompressSync('gzip', Buffer.concat([gz, Buffer.alloc(512)])).length).toBe(
      3 * 1024 * 1024,
    );
    for (const tail of [
      Buffer.from('\0junk'),
      Buffer.concat([Buffer.alloc(100_000), Buffer.from('junk')]),
    ]) {
      expect(await read(Buffer.concat([gz, tail]))).toMatch(/^Z_DATA_ERROR: /);
      expect(() => decompressSync('gzip', Buffer.concat([gz, tail]))).toThrow(
        'data after the last gzip member',
      );
    }
  });

  it('is not "data after the last member" when its reader destroys it mid-stream', async () => {
    const gz = blockGzipSync(text(8 * 1024 * 1024), 1);
    const d = createDecompressor('gzip');
    const err = await pipeline(
      Readable.from([gz]),
      d,
      new Writable({
        write(_c, _e, cb) {
          d.destroy();
          cb();
        },
      }),
    ).catch((e: unknown) => e);
    expect((err as { code?: string }).code).not.toBe('Z_DATA_ERROR');
    expect((err as { code?: string }).code).toBe('ERR_STREAM_PREMATURE_CLOSE');
  });
});
