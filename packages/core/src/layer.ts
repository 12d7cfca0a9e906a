import { Readable } from 'node:stream';
import {
  blockGzipSize,
  blockGzipSync,
  decompressSync,
  layerCompressionOf,
  sniffCompression,
  zstdFrameSync,
  type LayerCompression,
} from './compression.js';
import { digestOf, type Digest } from './digest.js';
import { MediaType, type MediaTypeString } from './media-types.js';
import type { Descriptor } from './wire.js';

/**
 * Layer is one filesystem changeset of an image. Its identity (digest, diffId,
 * size) may only be known once its bytes have flowed: single-pass stream
 * layers return pending promises until `compressed()` has been read to its end.
 * @see docs/design.md (Layer)
 */
export interface Layer {
  /** mediaType is the media type the layer's blob is stored under. */
  readonly mediaType: MediaTypeString;
  /** digest is the sha256 of the compressed bytes (the blob). */
  digest(): Promise<Digest>;
  /** diffId is the sha256 of the uncompressed tar. */
  diffId(): Promise<Digest>;
  /** size is the compressed byte count. */
  size(): Promise<number>;
  /** compressed returns the bytes a registry stores; the caller consumes or destroys it. */
  compressed(): Readable;
  /** uncompressed returns the tar; the caller consumes or destroys it. */
  uncompressed(): Readable;
  /**
   * knownDescriptor returns the layer's descriptor when it is known without
   * I/O (bytes layers, remote layers, opener layers after a pass), so writers
   * can HEAD or mount it before reading; undefined otherwise.
   */
  knownDescriptor?(): Descriptor | undefined;
  /** source names the repository a remote layer lives in, for cross-repo mounts. */
  readonly source?: BlobSource;
  /** annotations to place on the layer's descriptor. */
  readonly annotations?: Readonly<Record<string, string>>;
}

/** BlobSource is where a blob already lives: a registry host and repository. */
export type BlobSource = {
  readonly registry: string;
  readonly repository: string;
};

/** LayerBytesOptions configure {@link layerFromBytes}. */
export interface LayerBytesOptions {
  /** mediaType of the blob; defaults to the OCI gzip layer type when compressed, the OCI tar type otherwise. */
  readonly mediaType?: MediaTypeString;
  /**
   * compressed says the bytes are already gzip (`true` or `'gzip'`) or zstd;
   * when false they are the plain tar and are compressed here. Detected
   * from the magic bytes when omitted.
   */
  readonly compressed?: boolean | 'gzip' | 'zstd';
  /** compression applied to uncompressed bytes: gzip (default), zstd or none. */
  readonly compression?: LayerCompression;
  /** level of that compression: gzip 0–9 (default 1), zstd 1–22 (default 3). */
  readonly level?: number;
  readonly annotations?: Readonly<Record<string, string>>;
}

/**
 * BytesLayer is a layer held in memory with every value known up front. Meant
 * for small layers (tests, generated files); large content should stream.
 */
export class BytesLayer implements Layer {
  readonly mediaType: MediaTypeString;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly #blob: Uint8Array;
  readonly #tar: Uint8Array;
  readonly #digest: Digest;
  readonly #diffId: Digest;

  constructor(
    blob: Uint8Array,
    tar: Uint8Array,
    mediaType: MediaTypeString,
    annotations?: Readonly<Record<string, string>>,
  ) {
    this.#blob = blob;
    this.#tar = tar;
    this.mediaType = mediaType;
    if (annotations !== undefined) this.annotations = annotations;
    this.#digest = digestOf(blob);
    this.#diffId = blob === tar ? this.#digest : digestOf(tar);
  }

  digest(): Promise<Digest> {
    return Promise.resolve(this.#digest);
  }
  diffId(): Promise<Digest> {
    return Promise.resolve(this.#diffId);
  }
  size(): Promise<number> {
    return Promise.resolve(this.#blob.length);
  }
  compressed(): Readable {
    return Readable.from([Buffer.from(this.#blob)], { objectMode: false });
  }
  uncompressed(): Readable {
    return Readable.from([Buffer.from(this.#tar)], { objectMode: false });
  }
  knownDescriptor(): Descriptor {
    const d: Descriptor = {
      mediaType: this.mediaType,
      digest: this.#digest,
      size: this.#blob.length,
    };
    if (this.annotations !== undefined) d.annotations = { ...this.annotations };
    return d;
  }
}

/**
 * layerFromBytes makes a layer from an uncompressed tar, compressed here the
 * way the layers of `@lading/layers` compress by default (block gzip at
 * level 1, or block zstd at level 3: the same bytes for the same options),
 * or, with `{ compressed }` or gzip/zstd magic bytes, from an already
 * compressed blob.
 * @throws UNSUPPORTED for zstd on a Node without it.
 */
export function layerFromBytes(bytes: Uint8Array, options: LayerBytesOptions = {}): Layer {
  const given = options.compressed;
  const already =
    given === undefined
      ? sniffCompression(bytes)
      : given === true
        ? 'gzip'
        : given === false
          ? 'none'
          : given;
  if (already !== 'none') {
    return new BytesLayer(
      bytes,
      decompressSync(already, bytes),
      options.mediaType ?? (already === 'gzip' ? MediaType.OciLayerGzip : MediaType.OciLayerZstd),
      options.annotations,
    );
  }
  const compression =
    options.compression ??
    (options.mediaType === undefined ? 'gzip' : layerCompressionOf(options.mediaType));
  if (compression === 'none') {
    return new BytesLayer(
      bytes,
      bytes,
      options.mediaType ?? MediaType.OciLayer,
      options.annotations,
    );
  }
  if (compression === 'zstd') {
    const frames: Buffer[] = [];
    for (let off = 0; off < bytes.length || off === 0; off += blockGzipSize) {
      frames.push(zstdFrameSync(bytes.subarray(off, off + blockGzipSize), options.level ?? 3));
    }
    return new BytesLayer(
      Buffer.concat(frames),
      bytes,
      options.mediaType ?? MediaType.OciLayerZstd,
      options.annotations,
    );
  }
  return new BytesLayer(
    blockGzipSync(bytes, options.level ?? 1),
    bytes,
    options.mediaType ?? MediaType.OciLayerGzip,
    options.annotations,
  );
}
