import type { Readable } from 'node:stream';
import {
  LayerConsumedError,
  MediaType,
  type Descriptor,
  type Digest,
  type Layer,
  type MediaTypeString,
} from '@lading/core';
import { resolveCompression, type CompressionOptions } from './compression.js';
import { deferred } from '@lading/core/internal';
import { startPass, toReadable, type PassOutput, type PassResult } from './internal/pass.js';

/** LayerOptions are shared by every layer kind in this package. */
export interface LayerOptions extends CompressionOptions {
  /** mediaType of the blob; defaults to the OCI gzip layer type (OCI tar with `compression: 'none'`). */
  readonly mediaType?: MediaTypeString;
  /** annotations to place on the layer's descriptor. */
  readonly annotations?: Readonly<Record<string, string>>;
}

/** StreamLayerOptions configure {@link streamLayer}. */
export interface StreamLayerOptions extends LayerOptions {
  /**
   * compressed says the source is already gzip (`true` or `'gzip'`) or zstd:
   * it is passed through as is, never recompressed.
   */
  readonly compressed?: boolean | 'gzip' | 'zstd';
}

/** precompressedOf reads a `compressed` option: which compression the source already has. */
export function precompressedOf(
  compressed: boolean | 'gzip' | 'zstd' | undefined,
): 'gzip' | 'zstd' | undefined {
  if (compressed === true) return 'gzip';
  return compressed === false ? undefined : compressed;
}

/**
 * defaultMediaType picks the media type from the options and the source's
 * own compression (`undefined` for a tar, compressed as the options say).
 */
export function defaultMediaType(
  options: LayerOptions,
  precompressed: 'gzip' | 'zstd' | undefined,
): MediaTypeString {
  if (options.mediaType !== undefined) return options.mediaType;
  const blob = precompressed ?? options.compression ?? 'gzip';
  if (blob === 'gzip') return MediaType.OciLayerGzip;
  return blob === 'zstd' ? MediaType.OciLayerZstd : MediaType.OciLayer;
}

/** descriptorOf builds a layer's descriptor from a finished pass. */
export function descriptorOf(
  mediaType: MediaTypeString,
  r: PassResult,
  annotations: Readonly<Record<string, string>> | undefined,
): Descriptor {
  const d: Descriptor = { mediaType, digest: r.digest, size: r.size };
  if (annotations !== undefined) d.annotations = { ...annotations };
  return d;
}

/**
 * StreamLayer is a single-pass layer over a stream. Its digest, diffId and
 * size are pending promises until the stream handed out by `compressed()`
 * (or `uncompressed()`) has been read to its end; they then resolve together,
 * or all reject with the error that stopped the pass.
 */
export class StreamLayer implements Layer {
  readonly mediaType: MediaTypeString;
  readonly annotations?: Readonly<Record<string, string>>;
  #source: Readable | undefined;
  readonly #precompressed: 'gzip' | 'zstd' | undefined;
  readonly #options: StreamLayerOptions;
  readonly #result = deferred<PassResult>();
  readonly #digest: Promise<Digest>;
  readonly #diffId: Promise<Digest>;
  readonly #size: Promise<number>;
  #known: PassResult | undefined;

  constructor(source: Readable | AsyncIterable<Uint8Array>, options: StreamLayerOptions = {}) {
    this.#options = options;
    this.#precompressed = precompressedOf(options.compressed);
    resolveCompression(options);
    this.mediaType = defaultMediaType(options, this.#precompressed);
    if (options.annotations !== undefined) this.annotations = options.annotations;
    const readable = toReadable(source);
    // An error before anyone reads must not crash the process; the pass
    // started by compressed() still sees it (the stream is left errored).
    readable.on('error', () => undefined);
    this.#source = readable;
    const handled = <T>(p: Promise<T>): Promise<T> => {
      p.catch(() => undefined);
      return p;
    };
    this.#digest = handled(this.#result.promise.then((r) => r.digest));
    this.#diffId = handled(this.#result.promise.then((r) => r.diffId));
    this.#size = handled(this.#result.promise.then((r) => r.size));
    this.#result.promise.then(
      (r) => {
        this.#known = r;
      },
      () => undefined,
    );
  }

  digest(): Promise<Digest> {
    return this.#digest;
  }
  diffId(): Promise<Digest> {
    return this.#diffId;
  }
  size(): Promise<number> {
    return this.#size;
  }

  /**
   * compressed returns the blob. Callable once per layer.
   * @throws LAYER_CONSUMED when the layer has already been read.
   */
  compressed(): Readable {
    return this.#take('compressed');
  }

  /**
   * uncompressed returns the tar. It also consumes the layer; the blob's
   * digest and size are computed on the side, so all three values settle.
   * @throws LAYER_CONSUMED when the layer has already been read.
   */
  uncompressed(): Readable {
    return this.#take('uncompressed');
  }

  /** knownDescriptor is undefined until the layer has been read through, then its descriptor. */
  knownDescriptor(): Descriptor | undefined {
    if (this.#known === undefined) return undefined;
    return descriptorOf(this.mediaType, this.#known, this.annotations);
  }

  #take(output: PassOutput): Readable {
    const source = this.#source;
    if (source === undefined) throw new LayerConsumedError();
    this.#source = undefined;
    const pre = this.#precompressed;
    const pass = startPass(
      () => ({ stream: source, gzipped: pre === 'gzip', zstd: pre === 'zstd' }),
      output,
      resolveCompression(this.#options),
    );
    const { resolve, reject } = this.#result;
    pass.result.then(
      (v) => {
        resolve(v);
      },
      (e: unknown) => {
        reject(e);
      },
    );
    return pass.stream;
  }
}

/**
 * streamLayer makes a single-pass layer from a stream holding an
 * uncompressed tar, or with `{ compressed: true }` (or `'zstd'`) an
 * already-compressed tar (passed through as is; its diffId is computed by
 * decompressing on the side).
 * @see docs/design.md (Layer)
 * @throws INVALID_ARGUMENT for bad compression options; UNSUPPORTED for
 *   zstd compression on a Node without it.
 */
export function streamLayer(
  source: Readable | AsyncIterable<Uint8Array>,
  options: StreamLayerOptions = {},
): StreamLayer {
  return new StreamLayer(source, options);
}
