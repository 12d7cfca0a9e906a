import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { MiB } from './util.js';

const words = (
  'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ' +
  'incididunt ut labore et dolore magna aliqua container image layer registry ' +
  'manifest digest sha256 gzip tar stream upload blob config index platform linux ' +
  'amd64 arm64 /usr/lib/x86_64-linux-gnu libc.so.6 ld-linux-x86-64.so.2 0 1 2 3 4 5'
).split(' ');

/** xorshift32: a tiny deterministic PRNG, so every run generates the same bytes. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/**
 * mixedBlock is 1 MiB of alternating text (words from a small vocabulary,
 * compresses ~4:1) and random bytes (incompressible): 48 KiB text, 16 KiB
 * random, repeated. Its gzip ratio is near 0.45 — like a tree of binaries.
 */
export function mixedBlock(seed = 42): Buffer {
  const next = prng(seed);
  const buf = Buffer.allocUnsafe(MiB);
  let off = 0;
  while (off < buf.length) {
    const textEnd = Math.min(buf.length, off + 48 * 1024);
    while (off < textEnd) {
      const w = words[next() % words.length] ?? 'x';
      off += buf.write(w + (next() % 11 === 0 ? '\n' : ' '), off, 'latin1');
    }
    const randEnd = Math.min(buf.length, off + 16 * 1024);
    while (off < randEnd) buf[off++] = next() & 0xff;
  }
  return buf;
}

function octal(buf: Buffer, value: number, off: number, len: number): void {
  buf.write(value.toString(8).padStart(len - 1, '0') + '\0', off, len, 'latin1');
}

/** tarHeader is a ustar header of one regular file (size < 8 GiB). */
export function tarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  octal(h, 0o644, 100, 8);
  octal(h, 0, 108, 8);
  octal(h, 0, 116, 8);
  octal(h, size, 124, 12);
  octal(h, 0, 136, 12);
  h.write('        ', 148, 8, 'latin1');
  h.write('0', 156, 1, 'latin1');
  h.write('ustar\0' + '00', 257, 8, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return h;
}

/**
 * CountingSource is a generated tar of one file of `fileSize` bytes (the
 * {@link mixedBlock} repeated), made on the fly, never on disk; it counts the
 * bytes read from it.
 */
export class CountingSource extends Readable {
  readonly fileSize: number;
  /** total is the tar's size. */
  readonly total: number;
  /** produced is the number of bytes handed to the stream so far. */
  produced = 0;
  readonly #block: Buffer;
  #phase: 'header' | 'data' | 'trailer' | 'end' = 'header';
  #data = 0;

  constructor(fileSize: number, block: Buffer = mixedBlock()) {
    super({ highWaterMark: MiB });
    this.fileSize = fileSize;
    this.total = 512 + Math.ceil(fileSize / 512) * 512 + 1024;
    this.#block = block;
  }

  #emit(chunk: Buffer | null): void {
    if (chunk !== null) this.produced += chunk.length;
    this.push(chunk);
  }

  override _read(): void {
    switch (this.#phase) {
      case 'header':
        this.#phase = 'data';
        this.#emit(tarHeader('generated.bin', this.fileSize));
        return;
      case 'data': {
        const left = this.fileSize - this.#data;
        if (left > 0) {
          const chunk = left >= this.#block.length ? this.#block : this.#block.subarray(0, left);
          this.#data += chunk.length;
          this.#emit(chunk);
          return;
        }
        this.#phase = 'trailer';
        const pad = (512 - (this.fileSize % 512)) % 512;
        this.#emit(Buffer.alloc(pad + 1024));
        return;
      }
      case 'trailer':
        this.#phase = 'end';
        this.#emit(null);
        return;
      case 'end':
        return;
    }
  }
}

/**
 * writeGeneratedDirectory fills `dir` with files of the {@link mixedBlock}
 * repeated, `fileSize` bytes each (the last one shorter), `total` bytes in
 * all: a directory layer of a known size made without a corpus.
 */
export async function writeGeneratedDirectory(
  dir: string,
  total: number,
  fileSize = 64 * MiB,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const block = mixedBlock();
  for (let i = 0, left = total; left > 0; i++, left -= fileSize) {
    const size = Math.min(left, fileSize);
    const name = join(dir, `part-${String(i).padStart(4, '0')}.bin`);
    await pipeline(repeated(block, size), createWriteStream(name));
  }
}

function* repeated(block: Buffer, size: number): Generator<Buffer> {
  for (let done = 0; done < size; done += block.length) {
    yield block.subarray(0, Math.min(block.length, size - done));
  }
}
