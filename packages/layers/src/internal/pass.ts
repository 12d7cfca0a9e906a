import { PassThrough, Readable, Transform, Writable, type TransformCallback } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import {
  HashingStream,
  createDecompressor,
  createHasher,
  fileSystemError,
  isLadingError,
  type Digest,
  type Hasher,
} from '@lading/core';
import { decompressionError, deferred, discardSink, markDigesting } from '@lading/core/internal';
import { gzipTransform, type ResolvedCompression } from '../compression.js';
import { TarCheck } from './tar-check.js';

/** PassResult is what one pass over a layer's bytes learns. */
export interface PassResult {
  readonly digest: Digest;
  readonly diffId: Digest;
  readonly size: number;
}

/** PassSource is the opened input of a pass: a tar, or an already-gzipped (or zstd) tar. */
export interface PassSource {
  readonly stream: Readable;
  readonly gzipped: boolean;
  /** zstd says the stream is an already zstd-compressed tar (`gzipped` is then false). */
  readonly zstd?: boolean;
  /**
   * pooled says the stream is the pass's alone and yields pooled blocks
   * (a directory walk): gzip may then take them without a copy.
   */
  readonly pooled?: boolean;
}

function noop(): void {
  // intentionally empty
}

/** HashSink hashes and counts everything written to it and drops the bytes. */
class HashSink extends Writable {
  readonly #hasher: Hasher = createHasher('sha256');
  #size = 0;
  #digest: Digest | undefined;
  get digest(): Digest | undefined {
    return this.#digest;
  }
  get size(): number {
    return this.#size;
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.#hasher.update(chunk);
    this.#size += chunk.length;
    cb();
  }
  override _final(cb: (e?: Error | null) => void): void {
    this.#digest = this.#hasher.digest();
    cb();
  }
}

/**
 * SideChannel passes its input through unchanged and also writes it to a
 * side pipeline (a transform into a hash sink), with backpressure from both;
 * it finishes only when the side pipeline has finished.
 */
class SideChannel extends Transform {
  readonly #side: Writable;
  readonly #done: Promise<void>;
  #error: unknown;

  constructor(transform: Transform, sink: HashSink, check?: TarCheck) {
    super({ highWaterMark: 1024 * 1024 });
    this.#side = transform;
    this.#done = check === undefined ? pipeline(transform, sink) : pipeline(transform, check, sink);
    this.#done.catch((err: unknown) => {
      this.#error = err;
      this.destroy(err as Error);
    });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    if (this.#error !== undefined) {
      callback(this.#error as Error);
      return;
    }
    if (this.#side.write(chunk)) callback(null, chunk);
    else {
      this.push(chunk);
      this.#side.once('drain', () => {
        callback();
      });
    }
  }

  override _flush(callback: TransformCallback): void {
    this.#side.end();
    this.#done.then(
      () => {
        callback();
      },
      (err: unknown) => {
        callback(err as Error);
      },
    );
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#side.destroy();
    callback(err);
  }
}

/** Stages are the transforms of one pass and the hashes that watch them. */
interface Stages {
  readonly transforms: Transform[];
  readonly blobHash: HashingStream;
  readonly tarHash: HashingStream;
  readonly blobSink: HashSink | undefined;
  readonly tarSink: HashSink | undefined;
  /** none: the layer is an uncompressed tar, its blob is the tar. */
  readonly none: boolean;
}

/**
 * passStages builds the transforms between a pass's source and its output.
 * @throws UNSUPPORTED for a zstd source on a Node without zstd.
 */
function passStages(src: PassSource, output: PassOutput, compression: ResolvedCompression): Stages {
  const blobHash = new HashingStream();
  const tarHash = new HashingStream();
  // Every pass checks that the tar is complete: a producer that failed or
  // was killed must not become a layer (INVALID_LAYER, nothing settles).
  const check = new TarCheck();
  const precompressed = src.gzipped || src.zstd === true;
  const none = compression.compression === 'none' && !precompressed;
  const stages: Transform[] = [];
  let blobSink: HashSink | undefined;
  let tarSink: HashSink | undefined;
  if (none) {
    stages.push(tarHash, check);
  } else if (!precompressed) {
    stages.push(tarHash, check);
    if (output === 'compressed') {
      stages.push(gzipTransform(compression, src.pooled === true), blobHash);
    } else {
      blobSink = new HashSink();
      stages.push(new SideChannel(gzipTransform(compression, false), blobSink));
    }
  } else {
    stages.push(blobHash);
    const kind = src.gzipped ? 'gzip' : 'zstd';
    if (output === 'compressed') {
      tarSink = new HashSink();
      stages.push(new SideChannel(createDecompressor(kind), tarSink, check));
    } else stages.push(createDecompressor(kind), tarHash, check);
  }
  return { transforms: stages, blobHash, tarHash, blobSink, tarSink, none };
}

/** PassOutput is which side of the layer a pass hands to its consumer. */
export type PassOutput = 'compressed' | 'uncompressed';

/** Pass is one running pass: the stream the consumer reads and what it learns. */
export interface Pass {
  readonly stream: Readable;
  readonly result: Promise<PassResult>;
}

/**
 * startPass returns a stream at once and connects it to `open()` when that
 * resolves. In one pass it computes diffId (sha256 of the tar), digest and
 * size (sha256 and length of the blob): source → sha256 → gzip → sha256 for a
 * tar, source → sha256 (+ gunzip → sha256 on the side) for a gzipped source
 * (zstd alike).
 * Whichever side is not handed to the consumer is computed on a side channel
 * so that every value settles. `result` resolves only once the consumer has
 * read the stream to its end, and rejects on any error, including the
 * consumer destroying the stream early.
 */
export function startPass(
  open: () => PassSource | Promise<PassSource>,
  output: PassOutput,
  compression: ResolvedCompression,
): Pass {
  const out = new PassThrough({
    highWaterMark: 1024 * 1024,
    // Whoever reads the layer sees the typed error, whichever stage failed
    // (the pipeline below destroys `out` with the stage's own error).
    destroy(err, callback) {
      callback(err === null ? null : (typedPassError(err) as Error));
    },
  });
  const result = deferred<PassResult>();
  // Attach 'end'/'error' watchers before anything flows.
  const consumed = finished(out);
  consumed.catch(noop);
  const run = async (): Promise<PassResult> => {
    const src = await open();
    if (out.destroyed) {
      src.stream.destroy();
      throw out.errored ?? prematureClose();
    }
    let stages: Stages;
    try {
      stages = passStages(src, output, compression);
    } catch (err) {
      // Nothing will read the source (zstd on a Node without it): close it.
      src.stream.on('error', noop);
      src.stream.destroy();
      throw err;
    }
    await Promise.all([pipeline([src.stream, ...stages.transforms, out]), consumed]);
    const { blobHash, tarHash, blobSink, tarSink, none } = stages;
    const diffId = tarSink?.digest ?? tarHash.digest;
    const digest = none ? tarHash.digest : (blobSink?.digest ?? blobHash.digest);
    const size = none ? tarHash.size : (blobSink?.size ?? blobHash.size);
    if (diffId === undefined || digest === undefined) {
      throw new Error('internal: pass ended without digests');
    }
    return { digest, diffId, size };
  };
  run().then(
    (v) => {
      result.resolve(v);
    },
    (raw: unknown) => {
      const err = typedPassError(raw);
      if (!out.destroyed) out.destroy(err as Error);
      result.reject(err);
    },
  );
  // The blob's digest and size are those of exactly the bytes `out` yields,
  // so an upload of this stream need not hash them again.
  if (output === 'compressed') {
    markDigesting(out, () => result.promise.then(({ digest, size }) => ({ digest, size })));
  }
  return { stream: out, result: result.promise };
}

/**
 * typedPassError gives the errors a pass meets a lading code: a source that
 * does not decompress is INVALID_LAYER, a file-system error (a file
 * layer's file missing or unreadable) a LocalPathError naming the file.
 */
function typedPassError(err: unknown): unknown {
  if (isLadingError(err)) return err;
  const e = err as { syscall?: unknown; path?: unknown } | null;
  if (typeof e?.syscall === 'string' && typeof e.path === 'string')
    return fileSystemError(err, e.path);
  return decompressionError(err, 'the layer');
}

function prematureClose(): Error {
  const e = new Error('the layer stream was closed before its end') as Error & { code: string };
  e.code = 'ERR_STREAM_PREMATURE_CLOSE';
  return e;
}

/** toReadable adapts a Readable or an async iterable of bytes to a Readable. */
export function toReadable(source: Readable | AsyncIterable<Uint8Array>): Readable {
  if (source instanceof Readable) return source;
  return Readable.from(source, { objectMode: false });
}

/** drain reads a stream to its end, discarding the bytes. */
export async function drain(stream: Readable, signal?: AbortSignal): Promise<void> {
  await pipeline(stream, discardSink(), signal === undefined ? {} : { signal });
}
