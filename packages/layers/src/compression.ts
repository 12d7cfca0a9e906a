import { Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { ErrorCode, LadingError } from '@lading/core';
import { crc32Combine } from './internal/crc32.js';
import { adoptable, blockSize, giveBack, takeBlock } from './internal/block-pool.js';
import { deflatePool, type DeflatePool, type DeflateResult } from './internal/gzip-pool.js';

export { crc32 } from './internal/crc32.js';

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
export const gzipBlockSize = blockSize;

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
  return gzipTransform(resolveCompression(options), false);
}

/**
 * gzipTransform is {@link createGzipStream} for resolved options. With
 * `adopt`, blocks mode transfers whole pooled blocks it is given to the
 * workers instead of copying them: only for a writer whose chunks nobody
 * else holds (the compressed side of a pass over a pooled directory walk).
 */
export function gzipTransform(c: ResolvedCompression, adopt: boolean): Transform {
  if (c.gzipMode === 'blocks') return new BlockGzip(c.level, c.workers, adopt);
  // zlib runs each chunk on the libuv threadpool; a large output chunk keeps
  // the number of round trips to the main thread low. The bytes do not depend
  // on chunk sizes, so this stays identical to gzipSync at the same level.
  return zlib.createGzip({ level: c.level, chunkSize: 1024 * 1024 });
}

// A fixed header (mtime 0, no name, XFL 0, OS 3 = Unix) keeps blocks-mode
// output identical across machines.
const gzipHeader = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03]);

interface InFlight {
  readonly p: Promise<DeflateResult>;
  readonly length: number;
  done: boolean;
}

/**
 * BlockGzip writes one standard gzip member made of independently deflated
 * fixed-size blocks (full flush between blocks, finish on the last). Workers
 * checksum and deflate the blocks; this thread only copies input into
 * recycled block buffers, combines the CRCs and emits the outputs in order.
 * At most 3 × workers blocks are in flight.
 */
class BlockGzip extends Transform {
  readonly #level: number;
  readonly #pool: DeflatePool;
  readonly #maxInFlight: number;
  readonly #adopt: boolean;
  #block: Uint8Array;
  #filled = 0;
  #held: Uint8Array | undefined;
  #inFlight: InFlight[] = [];
  #crc = 0;
  #isize = 0;
  #headerSent = false;

  constructor(level: number, workers: number, adopt: boolean) {
    super({ highWaterMark: gzipBlockSize });
    this.#level = level;
    this.#pool = deflatePool(workers);
    this.#maxInFlight = 3 * workers;
    this.#adopt = adopt;
    // Each block owns its whole ArrayBuffer, so it can be transferred.
    this.#block = takeBlock();
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
    if (this.#adopt && this.#filled === 0 && adoptable(chunk)) {
      // A whole pooled block at a block boundary: it is the next block.
      const prev = this.#held;
      this.#held = chunk;
      if (prev !== undefined) await this.#dispatch(prev, gzipBlockSize, false);
      return;
    }
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(chunk.length - off, gzipBlockSize - this.#filled);
      this.#block.set(chunk.subarray(off, off + n), this.#filled);
      this.#filled += n;
      off += n;
      if (this.#filled === gzipBlockSize) {
        // A full block is held back until we know whether another follows:
        // only the last block is deflated with Z_FINISH.
        const prev = this.#held;
        this.#held = this.#block;
        this.#block = takeBlock();
        this.#filled = 0;
        if (prev !== undefined) await this.#dispatch(prev, gzipBlockSize, false);
      }
    }
  }

  async #finish(): Promise<void> {
    const held = this.#held;
    this.#held = undefined;
    if (held !== undefined) await this.#dispatch(held, gzipBlockSize, this.#filled === 0);
    if (this.#filled > 0 || held === undefined) {
      await this.#dispatch(this.#block, this.#filled, true);
    } else giveBack(this.#block);
    while (this.#inFlight.length > 0) await this.#emitHead();
    const trailer = Buffer.allocUnsafe(8);
    trailer.writeUInt32LE(this.#crc >>> 0, 0);
    trailer.writeUInt32LE(this.#isize >>> 0, 4);
    this.push(trailer);
  }

  async #dispatch(block: Uint8Array, length: number, last: boolean): Promise<void> {
    const entry: InFlight = {
      p: this.#pool.deflate(block, length, this.#level, last),
      length,
      done: false,
    };
    entry.p.then(
      () => {
        entry.done = true;
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
    const r = await head.p;
    this.#crc = crc32Combine(this.#crc, r.crc, head.length);
    this.#isize = (this.#isize + head.length) % 0x100000000;
    giveBack(r.input);
    if (!this.#headerSent) {
      this.#headerSent = true;
      this.push(gzipHeader);
    }
    this.push(r.output);
  }
}
