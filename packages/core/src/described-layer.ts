import type { Readable } from 'node:stream';
import { layerTarStream } from './compression.js';
import type { Digest } from './digest.js';
import { ErrorCode, LadingError } from './errors.js';
import type { Layer } from './layer.js';
import type { MediaTypeString } from './media-types.js';
import type { ConfigFile, Descriptor } from './wire.js';

/**
 * DescribedLayer is the base of layers whose descriptor is known before any
 * byte moves: one listed in a manifest read from a registry, an OCI layout
 * or an archive. Digest, size and the descriptor answer without I/O, the
 * diffId comes from the image's config, and `uncompressed()` decompresses
 * `compressed()` by media type. A subclass supplies `compressed()`, which
 * should open its source only when first read.
 */
export abstract class DescribedLayer implements Layer {
  readonly mediaType: MediaTypeString;
  readonly annotations?: Readonly<Record<string, string>>;
  /** described is the layer's descriptor as the manifest lists it. */
  protected readonly described: Descriptor;
  /** signal cancels the reads of the layer's bytes. */
  protected readonly signal: AbortSignal | undefined;
  readonly #diffId: () => Promise<Digest>;

  /**
   * @param descriptor - the layer's descriptor from the manifest
   * @param diffId - answers the layer's diffId (usually from the image's config)
   * @param signal - cancels the reads of the layer's bytes
   */
  constructor(
    descriptor: Descriptor,
    diffId: () => Promise<Digest>,
    signal: AbortSignal | undefined,
  ) {
    this.described = descriptor;
    this.mediaType = descriptor.mediaType;
    if (descriptor.annotations !== undefined) this.annotations = descriptor.annotations;
    this.#diffId = diffId;
    this.signal = signal;
  }

  /**
   * diffIdFromConfig answers layer `index`'s diffId from an image's config,
   * read when first asked (the usual `diffId` argument of the constructor).
   * @throws INVALID_CONFIG when the config lists no diffId for that layer.
   */
  static diffIdFromConfig(
    configFile: () => Promise<ConfigFile>,
    index: number,
  ): () => Promise<Digest> {
    return async () => {
      const id = (await configFile()).rootfs.diff_ids[index];
      if (id === undefined) {
        throw new LadingError(ErrorCode.InvalidConfig, `config lists no diffId for layer ${index}`);
      }
      return id;
    };
  }

  /** digest is the descriptor's digest (no I/O). */
  digest(): Promise<Digest> {
    return Promise.resolve(this.described.digest);
  }

  /** size is the descriptor's size (no I/O). */
  size(): Promise<number> {
    return Promise.resolve(this.described.size);
  }

  /** diffId is the digest of the uncompressed tar, as the image's config lists it. */
  diffId(): Promise<Digest> {
    return this.#diffId();
  }

  /** knownDescriptor is a copy of the descriptor as the manifest lists it. */
  knownDescriptor(): Descriptor {
    return { ...this.described };
  }

  /** compressed streams the blob's bytes as stored. */
  abstract compressed(): Readable;

  /**
   * uncompressed is the layer's tar: gzip and zstd layers are decompressed.
   * @throws UNSUPPORTED for a zstd layer on a Node without zstd.
   */
  uncompressed(): Readable {
    return layerTarStream(this.compressed(), this.mediaType);
  }
}
