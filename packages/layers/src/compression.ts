import { Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { ErrorCode, LadingError } from '@lading/core';
import { deflatePool, type DeflatePool } from './internal/gzip-pool.js';

/**
 * CompressionOptions choose how a layer's tar becomes its blob. Every layer
 * kind in this package accepts them.
 */
export interface CompressionOptions {
  /** compression of the blob: gzip (default) or none (the blob is the tar). */
  readonly compression?: 'gzip' | 'none';
  /** level is the gzip level, 1–9 (default 6). */
  readonly level?: number;
  /** workers is the number of worker threads for `gzipMode: 'blocks'` (default 1). */
  readonly workers?: number;
  /**
   * gzipMode picks the gzip writer. `stream` (the default when workers is 1)
   * is one zlib deflate stream, byte-identical with `gzipSync` at the same
   * level. `blocks` (the default when workers > 1) deflates fixed 1 MiB
   * blocks independently on worker threads (like `pigz --independent`); its
   * bytes do not depend on the number of workers.
   */
  readonly gzipMode?: 'stream' | 'blocks';
}

/** ResolvedCompression is {@link CompressionOptions} with defaults applied. */
export interface ResolvedCompression {
  readonly compression: 'gzip' | 'none';
  readonly level: number;
  readonly workers: number;
  readonly gzipMode: 'stream' | 'blocks';
}

/** blockSize is the uncompressed size of each independent block in `blocks` mode. */
export const gzipBlockSize = 1024 * 1024;

/**
 * resolveCompression applies defaults and validates compression options.
 * @throws INVALID_ARGUMENT for a level outside 0–9 or workers below 1.
 */
export function resolveCompression(options: CompressionOptions = {}): ResolvedCompression {
  const level = options.level ?? 6;
  const workers = options.workers ?? 1;
  if (!Number.isInteger(level) || level < 0 || level > 9) {
    throw new LadingError(ErrorCode.InvalidArgument, `gzip level must be 0–9, got ${level}`);
  }
  if (!Number.isInteger(workers) || workers < 1) {
    throw new LadingError(ErrorCode.InvalidArgument, `workers must be ≥ 1, got ${workers}`);
  }
  return {
    compression: options.compression ?? 'gzip',
    level,
    workers,
    gzipMode: options.gzipMode ?? (workers > 1 ? 'blocks' : 'stream'),
  };
}

/**
 * createGzipStream returns a Transform that gzips what is written to it,
 * following {@link CompressionOptions}.
 */
export function createGzipStream(options: CompressionOptions = {}): Transform {
  const c = resolveCompression(options);
  if (c.gzipMode === 'blocks') return new BlockGzip(c.level, c.workers);
  // zlib runs each chunk on the libuv threadpool; a large output chunk keeps
  // the number of round trips to the main thread low. The bytes do not depend
  // on chunk sizes, so this stays identical to gzipSync at the same level.
  return zlib.createGzip({ level: c.level, chunkSize: 256 * 1024 });
}

// A fixed header (mtime 0, no name, XFL 0, OS 3 = Unix) keeps blocks-mode
// output identical across machines.
const gzipHeader = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03]);

type Crc32 = (data: Uint8Array, value?: number) => number;

const crcTable = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function tableCrc32(data: Uint8Array, value = 0): number {
  let c = (value ^ 0xffffffff) >>> 0;
  for (const b of data) c = (crcTable[(c ^ b) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const zlibCrc = (zlib as { crc32?: Crc32 }).crc32;
/** crc32 is zlib.crc32 where Node has it (≥ 20.15), a table implementation otherwise. */
export const crc32: Crc32 = typeof zlibCrc === 'function' ? zlibCrc : tableCrc32;

/**
 * BlockGzip writes one standard gzip member made of independently deflated
 * fixed-size blocks (full flush between blocks, finish on the last), computed
 * on a worker pool. At most 2 × workers blocks are in flight.
 */
class BlockGzip extends Transform {
  readonly #level: number;
  readonly #pool: DeflatePool;
  readonly #maxInFlight: number;
  #block: Buffer = Buffer.allocUnsafeSlow(gzipBlockSize);
  #filled = 0;
  #held: Buffer | undefined;
  #inFlight: { p: Promise<Buffer>; done: boolean; value?: Buffer }[] = [];
  #crc = 0;
  #isize = 0;
  #headerSent = false;

  constructor(level: number, workers: number) {
    super({ highWaterMark: gzipBlockSize });
    this.#level = level;
    this.#pool = deflatePool(workers);
    this.#maxInFlight = 2 * workers;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.#take(chunk).then(
      () => {
        callback();
      },
      (err: unknown) => {
        callback(err as Error);
      },
    );
  }

  override _flush(callback: TransformCallback): void {
    this.#finish().then(
      () => {
        callback();
      },
      (err: unknown) => {
        callback(err as Error);
      },
    );
  }

  async #take(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(chunk.length - off, gzipBlockSize - this.#filled);
      chunk.copy(this.#block, this.#filled, off, off + n);
      this.#filled += n;
      off += n;
      if (this.#filled === gzipBlockSize) {
        // A full block is held back until we know whether another follows:
        // only the last block is deflated with Z_FINISH.
        const full = this.#block;
        this.#block = Buffer.allocUnsafeSlow(gzipBlockSize);
        this.#filled = 0;
        const prev = this.#held;
        this.#held = full;
        if (prev !== undefined) await this.#dispatch(prev, false);
      }
    }
  }

  async #finish(): Promise<void> {
    if (this.#filled > 0) {
      if (this.#held !== undefined) await this.#dispatch(this.#held, false);
      await this.#dispatch(this.#block.subarray(0, this.#filled), true);
    } else if (this.#held !== undefined) {
      await this.#dispatch(this.#held, true);
    } else {
      await this.#dispatch(Buffer.alloc(0), true);
    }
    this.#held = undefined;
    while (this.#inFlight.length > 0) await this.#emitHead();
    const trailer = Buffer.allocUnsafe(8);
    trailer.writeUInt32LE(this.#crc >>> 0, 0);
    trailer.writeUInt32LE(this.#isize >>> 0, 4);
    this.push(trailer);
  }

  async #dispatch(block: Buffer, last: boolean): Promise<void> {
    this.#crc = crc32(block, this.#crc);
    this.#isize = (this.#isize + block.length) % 0x100000000;
    // A subarray cannot be transferred; give the worker an exclusive copy.
    const input =
      block.byteOffset === 0 && block.byteLength === block.buffer.byteLength
        ? block
        : Buffer.from(block);
    const entry: { p: Promise<Buffer>; done: boolean; value?: Buffer } = {
      p: this.#pool.deflate(input, this.#level, last),
      done: false,
    };
    entry.p.then(
      (v) => {
        entry.done = true;
        entry.value = v;
      },
      () => {
        entry.done = true;
      },
    );
    this.#inFlight.push(entry);
    // Emit whatever already finished, in order; then wait while the window is full.
    while (this.#inFlight[0]?.done === true) await this.#emitHead();
    while (this.#inFlight.length >= this.#maxInFlight) await this.#emitHead();
  }

  async #emitHead(): Promise<void> {
    const head = this.#inFlight.shift();
    if (head === undefined) return;
    const out = await head.p;
    if (!this.#headerSent) {
      this.#headerSent = true;
      this.push(gzipHeader);
    }
    this.push(out);
  }
}
