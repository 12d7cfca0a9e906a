import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { ErrorCode, LadingError, zstdAvailable } from '@lading/core';
import { zstdLevelRange, zstdUnsupported } from '@lading/core/internal';
import { adoptable, blockSize, giveBack, takeBlock } from './internal/block-pool.js';
import { allocatedBlock } from './internal/reclaim.js';
import {
  deflatePool,
  type Codec,
  type DeflatePool,
  type DeflateResult,
} from './internal/gzip-pool.js';

/**
 * CompressionOptions choose how a layer's tar becomes its blob. Every layer
 * kind in this package accepts them.
 */
export interface CompressionOptions {
  /**
   * compression of the blob: gzip (default), zstd (Node ≥ 22.15; the blob is
   * `application/vnd.oci.image.layer.v1.tar+zstd`) or none (the blob is the tar).
   */
  readonly compression?: 'gzip' | 'zstd' | 'none';
  /**
   * level is the gzip level, 0–9 (default 1: see the README for the
   * measurements), or the zstd level, 1–22 (default 3).
   */
  readonly level?: number;
  /** workers is the number of compression worker threads (default `os.availableParallelism()`). */
  readonly workers?: number;
  /**
   * gzipMode picks the gzip writer. `blocks` (the default, for any number of
   * workers) deflates fixed 1 MiB blocks on worker threads with libdeflate
   * (WebAssembly), each its own gzip member (as BGZF and eStargz do; every
   * gzip reader reads the series as one stream); its bytes do not depend on
   * the number of workers or the machine. `stream` is one node:zlib deflate
   * stream on the libuv threadpool, byte-identical with `gzipSync` at the
   * same level (one core). zstd is always written in blocks: one
   * independent frame per 1 MiB.
   */
  readonly gzipMode?: 'stream' | 'blocks';
}

/** ResolvedCompression is {@link CompressionOptions} with defaults applied. */
export interface ResolvedCompression {
  readonly compression: 'gzip' | 'zstd' | 'none';
  readonly level: number;
  readonly workers: number;
  readonly gzipMode: 'stream' | 'blocks';
}

/** gzipBlockSize is the uncompressed size of each independent block in `blocks` mode. */
export const gzipBlockSize = blockSize;

/** defaultGzipLevel is the gzip level used when none is given (see the README). */
export const defaultGzipLevel = 1;

/** defaultZstdLevel is the zstd level used when none is given. */
export const defaultZstdLevel = 3;

/**
 * resolveCompression applies defaults and validates compression options.
 * @throws INVALID_ARGUMENT for a level out of range or workers below 1;
 *   UNSUPPORTED for zstd on a Node without it (it names the version needed).
 */
export function resolveCompression(options: CompressionOptions = {}): ResolvedCompression {
  const compression = options.compression ?? 'gzip';
  const zstd = compression === 'zstd';
  const level = options.level ?? (zstd ? defaultZstdLevel : defaultGzipLevel);
  const workers = options.workers ?? availableParallelism();
  const [min, max] = zstd ? [zstdLevelRange.min, zstdLevelRange.max] : [0, 9];
  if (!Number.isInteger(level) || level < min || level > max) {
    throw new LadingError(
      ErrorCode.InvalidArgument,
      `${zstd ? 'zstd' : 'gzip'} level must be ${min}–${max}, got ${level}`,
    );
  }
  if (!Number.isInteger(workers) || workers < 1) {
    throw new LadingError(ErrorCode.InvalidArgument, `workers must be ≥ 1, got ${workers}`);
  }
  if (zstd && !zstdAvailable()) throw zstdUnsupported('compress a layer with zstd');
  return { compression, level, workers, gzipMode: options.gzipMode ?? 'blocks' };
}

/**
 * createGzipStream returns a Transform that gzips (or, with
 * `compression: 'zstd'`, zstd-compresses) what is written to it, following
 * {@link CompressionOptions}.
 * @throws INVALID_ARGUMENT for a level out of range or workers below 1;
 *   UNSUPPORTED for zstd on a Node without it (it names the version needed).
 */
export function createGzipStream(options: CompressionOptions = {}): Transform {
  return gzipTransform(resolveCompression(options), false);
}

/**
 * gzipTransform is {@link createGzipStream} for resolved options (gzip or
 * zstd). With `adopt`, blocks mode transfers whole pooled blocks it is given
 * to the workers instead of copying them: only for a writer whose chunks
 * nobody else holds (the compressed side of a pass over a pooled directory
 * walk).
 */
export function gzipTransform(c: ResolvedCompression, adopt: boolean): Transform {
  if (c.compression === 'zstd') return new BlockGzip('zstd', c.level, c.workers, adopt);
  if (c.gzipMode === 'blocks') return new BlockGzip('gzip', c.level, c.workers, adopt);
  // zlib runs each chunk on the libuv threadpool; a large output chunk keeps
  // the number of round trips to the main thread low. The bytes do not depend
  // on chunk sizes, so this stays identical to gzipSync at the same level.
  return zlib.createGzip({ level: c.level, chunkSize: 1024 * 1024 });
}

interface InFlight {
  readonly p: Promise<DeflateResult>;
  done: boolean;
}

/**
 * BlockGzip writes a series of gzip members, one per fixed-size block, each
 * deflated on its own by libdeflate (a reader sees one gzip stream: RFC 1952
 * §2.2), or for zstd one independent frame per block, concatenated. Workers
 * checksum and compress the blocks, each into one whole member (or frame);
 * this thread only copies input into recycled block buffers and emits the
 * members in order, one chunk each. The pool's window bounds the blocks in
 * flight: two per running worker, and one more while not all have started.
 */
class BlockGzip extends Transform {
  readonly #level: number;
  readonly #pool: DeflatePool;
  readonly #adopt: boolean;
  #block: Uint8Array;
  #filled = 0;
  #blocks = 0;
  #inFlight: InFlight[] = [];

  constructor(codec: Codec, level: number, workers: number, adopt: boolean) {
    super({ highWaterMark: gzipBlockSize });
    this.#level = level;
    this.#pool = deflatePool(workers, codec);
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
      await this.#dispatch(chunk, gzipBlockSize);
      return;
    }
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(chunk.length - off, gzipBlockSize - this.#filled);
      this.#block.set(chunk.subarray(off, off + n), this.#filled);
      this.#filled += n;
      off += n;
      if (this.#filled === gzipBlockSize) {
        const full = this.#block;
        this.#block = takeBlock();
        this.#filled = 0;
        await this.#dispatch(full, gzipBlockSize);
      }
    }
  }

  async #finish(): Promise<void> {
    // An empty input is still one (empty) member or frame: a valid gzip or zstd stream.
    if (this.#filled > 0 || this.#blocks === 0) await this.#dispatch(this.#block, this.#filled);
    else giveBack(this.#block);
    while (this.#inFlight.length > 0) await this.#emitHead();
  }

  async #dispatch(block: Uint8Array, length: number): Promise<void> {
    this.#blocks++;
    const entry: InFlight = {
      p: this.#pool.deflate(block, length, this.#level),
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
    while (this.#inFlight.length >= this.#pool.window) await this.#emitHead();
  }

  async #emitHead(): Promise<void> {
    const head = this.#inFlight.shift();
    if (head === undefined) return;
    const r = await head.p;
    giveBack(r.input);
    allocatedBlock(r.output.buffer.byteLength);
    this.push(r.output);
  }
}
