import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import { MediaType, digestOf, type Digest, type Layer } from '@lading/core';

/** OnceLayerOptions configure {@link OnceLayer}. */
export interface OnceLayerOptions {
  /** fail makes compressed() error after its first bytes, rejecting digest() and size(). */
  readonly fail?: boolean;
}

/**
 * OnceLayer is a single-pass gzip layer over tar bytes: digest, diffId and
 * size stay pending until compressed() has been read to its end (like a
 * stream layer), a second compressed() throws, and with `fail` the stream
 * errors after its first bytes and the pending values reject (never
 * unhandled).
 */
export class OnceLayer implements Layer {
  readonly mediaType = MediaType.OciLayerGzip;
  readonly #tar: Buffer;
  readonly #fail: boolean;
  #consumed = false;
  readonly #digest: Promise<Digest>;
  readonly #size: Promise<number>;
  #settle: ((v: { digest: Digest; size: number } | Error) => void) | undefined;

  constructor(tar: Buffer, options: OnceLayerOptions = {}) {
    this.#tar = tar;
    this.#fail = options.fail ?? false;
    const values = new Promise<{ digest: Digest; size: number }>((resolve, reject) => {
      this.#settle = (v) => {
        if (v instanceof Error) reject(v);
        else resolve(v);
      };
    });
    values.catch(() => undefined);
    this.#digest = values.then((v) => v.digest);
    this.#size = values.then((v) => v.size);
    this.#digest.catch(() => undefined);
    this.#size.catch(() => undefined);
  }

  /** digest is the sha256 of the gzip stream, once compressed() has been read. */
  digest(): Promise<Digest> {
    return this.#digest;
  }

  /** diffId is the sha256 of the tar, once compressed() has been read. */
  diffId(): Promise<Digest> {
    return this.#digest.then(() => digestOf(this.#tar));
  }

  /** size is the gzip stream's length, once compressed() has been read. */
  size(): Promise<number> {
    return this.#size;
  }

  /** compressed streams the gzip bytes in two chunks; a second call throws. */
  compressed(): Readable {
    if (this.#consumed) throw new Error('consumed');
    this.#consumed = true;
    const gz = gzipSync(this.#tar);
    const settle = this.#settle;
    const fail = this.#fail;
    let n = 0;
    const counting = new Transform({
      transform(chunk: Buffer, _e, cb: TransformCallback) {
        n += chunk.length;
        if (fail) {
          const err = new Error('source failed');
          settle?.(err);
          cb(err);
          return;
        }
        cb(null, chunk);
      },
      flush(cb) {
        settle?.({ digest: digestOf(gz), size: n });
        cb();
      },
    });
    pipeline(Readable.from([gz.subarray(0, 64), gz.subarray(64)]), counting).catch(() => undefined);
    return counting;
  }

  /** uncompressed streams the tar. */
  uncompressed(): Readable {
    return Readable.from([this.#tar]);
  }
}
