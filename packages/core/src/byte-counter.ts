import { Transform, type TransformCallback } from 'node:stream';
import { ErrorCode, LadingError } from './errors.js';

/** ByteCounterOptions add a cap and a per-chunk hook to a {@link ByteCounter}. */
export interface ByteCounterOptions {
  /** limit is the most bytes let through; the chunk that passes it fails the stream. Default: none. */
  readonly limit?: number | undefined;
  /** overLimit makes the error for a stream over `limit` (default SIZE_MISMATCH). */
  readonly overLimit?: (() => Error) | undefined;
  /**
   * onChunk sees every chunk within the limit before it passes on, with the
   * running total (this chunk included): to report progress, hash it, or
   * refuse it by returning an Error, which fails the stream.
   */
  readonly onChunk?: ((chunk: Buffer, total: number) => Error | undefined) | undefined;
}

/**
 * ByteCounter is a pass-through that counts the bytes flowing through it,
 * optionally capped and watched chunk by chunk. It is the one byte counter
 * of lading: registry upload bodies, remote's PATCH bodies and progress.
 * (HashingStream in digest.ts is the counter that also hashes.)
 */
export class ByteCounter extends Transform {
  #count = 0;
  readonly #limit: number;
  readonly #options: ByteCounterOptions;

  constructor(options: ByteCounterOptions = {}) {
    super();
    this.#limit = options.limit ?? Number.POSITIVE_INFINITY;
    this.#options = options;
  }

  /** reporting makes a counter that tells `onTotal` the running total after every chunk (progress). */
  static reporting(onTotal: ((total: number) => void) | undefined): ByteCounter {
    return new ByteCounter({
      onChunk: (_chunk, total) => {
        onTotal?.(total);
        return undefined;
      },
    });
  }

  /** count is the number of bytes seen so far (a refused chunk included). */
  get count(): number {
    return this.#count;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#count += chunk.length;
    if (this.#count > this.#limit) {
      cb(
        this.#options.overLimit?.() ??
          new LadingError(
            ErrorCode.SizeMismatch,
            `more than the ${this.#limit} bytes expected (${this.#count} so far)`,
          ),
      );
      return;
    }
    const refused = this.#options.onChunk?.(chunk, this.#count);
    if (refused instanceof Error) {
      cb(refused);
      return;
    }
    cb(null, chunk);
  }
}
