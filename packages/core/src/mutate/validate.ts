import { pipeline } from 'node:stream/promises';
import { isDeepStrictEqual } from 'node:util';
import { HashingStream, digestOf, type Digest } from '../digest.js';
import {
  DigestMismatchError,
  ErrorCode,
  LadingError,
  SizeMismatchError,
  isLadingError,
  throwIfAborted,
} from '../errors.js';
import { isImageIndex, type Image, type ImageIndex } from '../image.js';
import type { Layer } from '../layer.js';
import { createDecompressor, decompressionError, layerCompressionOf } from '../compression.js';
import { MediaType } from '../media-types.js';
import { parseConfigFile, parseImageManifest, parseIndexManifest } from '../parse.js';
import type { IoOptions } from '../target.js';
import { discardSink } from '../sink.js';

/** ValidateOptions configure {@link validateImage}. */
export interface ValidateOptions extends IoOptions {
  /** layers: false skips reading layer bytes (checks manifest/config agreement only). */
  readonly layers?: boolean;
}

function invalid(code: ErrorCode, message: string): LadingError {
  return new LadingError(code, message);
}

type Hashed = { digest: Digest; size: number; diffId: Digest };

/** hashLayer reads the compressed stream once, hashing it and (decompressed) the tar. */
async function hashLayer(layer: Layer, signal: AbortSignal | undefined): Promise<Hashed> {
  const compressed = new HashingStream();
  const tar = new HashingStream();
  const opts = signal === undefined ? {} : { signal };
  const kind = layerCompressionOf(layer.mediaType);
  if (kind !== 'none') {
    await pipeline(
      layer.compressed(),
      compressed,
      createDecompressor(kind),
      tar,
      discardSink(),
      opts,
    );
  } else {
    await pipeline(layer.compressed(), compressed, discardSink(), opts);
  }
  const digest = compressed.digest;
  if (digest === undefined) throw invalid(ErrorCode.Io, 'layer stream ended without a digest');
  let diffId = kind !== 'none' ? tar.digest : digest;
  if (
    kind === 'none' &&
    layer.mediaType !== MediaType.OciLayer &&
    layer.mediaType !== 'application/vnd.docker.image.rootfs.diff.tar'
  ) {
    // Neither compressed nor a plain tar type we know: hash what the layer says is its tar.
    const second = new HashingStream();
    await pipeline(layer.uncompressed(), second, discardSink(), opts);
    diffId = second.digest;
  }
  if (diffId === undefined) throw invalid(ErrorCode.Io, 'layer tar ended without a digest');
  return { digest, size: compressed.size, diffId };
}

async function validateIndex(index: ImageIndex, options: ValidateOptions): Promise<void> {
  const raw = await index.rawManifest();
  const parsed = parseIndexManifest(raw, index.mediaType);
  const digest = digestOf(raw);
  const [claimed, size, manifest, children] = await Promise.all([
    index.digest(),
    index.size(),
    index.indexManifest(),
    index.children(),
  ]);
  if (claimed !== digest) throw new DigestMismatchError(digest, claimed, 'index digest()');
  if (size !== raw.length) throw new SizeMismatchError(raw.length, size, 'index size()');
  if (!isDeepStrictEqual(manifest, parsed)) {
    throw invalid(ErrorCode.InvalidManifest, 'indexManifest() disagrees with rawManifest()');
  }
  if (children.length !== parsed.manifests.length) {
    throw invalid(
      ErrorCode.InvalidManifest,
      `index lists ${parsed.manifests.length} manifests but children() has ${children.length}`,
    );
  }
  for (const [i, child] of children.entries()) {
    const desc = parsed.manifests[i];
    const target = child.kind === 'image' ? child.image : child.index;
    if (desc === undefined) continue;
    if (!isDeepStrictEqual(child.descriptor, desc)) {
      throw invalid(ErrorCode.InvalidManifest, `$.manifests[${i}] disagrees with children()[${i}]`);
    }
    const [d, s] = await Promise.all([target.digest(), target.size()]);
    if (d !== desc.digest) throw new DigestMismatchError(desc.digest, d, `$.manifests[${i}]`);
    if (s !== desc.size) throw new SizeMismatchError(desc.size, s, `$.manifests[${i}]`);
    if (target.mediaType !== desc.mediaType) {
      throw invalid(
        ErrorCode.InvalidManifest,
        `$.manifests[${i}].mediaType is ${desc.mediaType} but the child is ${target.mediaType}`,
      );
    }
    await validateImage(target, options);
  }
}

/**
 * validateImage checks that an image's manifest, config and layers agree
 * (ggcr's `validate.Image`): raw and parsed forms match, digests and sizes
 * are those of the raw bytes, the config descriptor describes the config,
 * there are as many layers as descriptors and diff_ids (and non-empty
 * history entries), and each layer's compressed stream hashes to its
 * descriptor's digest and size and, decompressed, to its diffId. For an
 * index it checks the children's descriptors and validates each child.
 * It reads every layer once; single-pass layers are consumed.
 * @throws INVALID_MANIFEST, INVALID_CONFIG, DIGEST_MISMATCH, SIZE_MISMATCH (the first
 *   disagreement found); INVALID_LAYER for a layer that does not decompress
 *   (data after its last gzip member or zstd frame included); ABORTED; IO
 *   when a layer cannot be read.
 */
export async function validateImage(
  image: Image | ImageIndex,
  options: ValidateOptions = {},
): Promise<void> {
  throwIfAborted(options.signal);
  if (isImageIndex(image)) {
    await validateIndex(image, options);
    return;
  }
  // Layers first: for stream layers the manifest is only known once read.
  const layers = await image.layers();
  const hashed: Hashed[] = [];
  if (options.layers !== false) {
    for (const [i, layer] of layers.entries()) {
      try {
        hashed.push(await hashLayer(layer, options.signal));
      } catch (err) {
        if (isLadingError(err)) throw err;
        // Bytes that are not the gzip or zstd stream their media type says.
        const typed = decompressionError(err, `layer ${i}`);
        if (typed !== err) throw typed;
        throw new LadingError(ErrorCode.Io, `layer ${i}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
  }

  const rawManifest = await image.rawManifest();
  const parsed = parseImageManifest(rawManifest, image.mediaType);
  const manifestDigest = digestOf(rawManifest);
  const [claimed, size, manifest] = await Promise.all([
    image.digest(),
    image.size(),
    image.manifest(),
  ]);
  if (claimed !== manifestDigest) {
    throw new DigestMismatchError(manifestDigest, claimed, 'image digest()');
  }
  if (size !== rawManifest.length) throw new SizeMismatchError(rawManifest.length, size, 'size()');
  if (!isDeepStrictEqual(manifest, parsed)) {
    throw invalid(ErrorCode.InvalidManifest, 'manifest() disagrees with rawManifest()');
  }

  const rawConfig = await image.rawConfig();
  const config = parseConfigFile(rawConfig);
  const configDigest = digestOf(rawConfig);
  if (parsed.config.digest !== configDigest) {
    throw new DigestMismatchError(parsed.config.digest, configDigest, '$.config');
  }
  if (parsed.config.size !== rawConfig.length) {
    throw new SizeMismatchError(parsed.config.size, rawConfig.length, '$.config');
  }
  const [configFile, configDescriptor] = await Promise.all([
    image.configFile(),
    image.configDescriptor(),
  ]);
  if (!isDeepStrictEqual(configFile, config)) {
    throw invalid(ErrorCode.InvalidConfig, 'configFile() disagrees with rawConfig()');
  }
  if (!isDeepStrictEqual(configDescriptor, parsed.config)) {
    throw invalid(ErrorCode.InvalidManifest, 'configDescriptor() disagrees with $.config');
  }

  const diffIds = config.rootfs.diff_ids;
  if (layers.length !== parsed.layers.length) {
    throw invalid(
      ErrorCode.InvalidManifest,
      `the manifest lists ${parsed.layers.length} layers but layers() has ${layers.length}`,
    );
  }
  if (diffIds.length !== parsed.layers.length) {
    throw invalid(
      ErrorCode.InvalidConfig,
      `the config lists ${diffIds.length} diff_ids but the manifest has ${parsed.layers.length} layers`,
    );
  }
  const history = config.history ?? [];
  const nonEmpty = history.filter((h) => h.empty_layer !== true).length;
  if (history.length > 0 && nonEmpty !== diffIds.length) {
    throw invalid(
      ErrorCode.InvalidConfig,
      `the config has ${nonEmpty} non-empty history entries for ${diffIds.length} layers`,
    );
  }

  for (const [i, layer] of layers.entries()) {
    const desc = parsed.layers[i];
    const diffId = diffIds[i];
    if (desc === undefined || diffId === undefined) continue;
    const what = `$.layers[${i}]`;
    if (layer.mediaType !== desc.mediaType) {
      throw invalid(
        ErrorCode.InvalidManifest,
        `${what}.mediaType is ${desc.mediaType} but the layer says ${layer.mediaType}`,
      );
    }
    const [d, s, id] = await Promise.all([layer.digest(), layer.size(), layer.diffId()]);
    if (d !== desc.digest) throw new DigestMismatchError(desc.digest, d, `${what} digest()`);
    if (s !== desc.size) throw new SizeMismatchError(desc.size, s, `${what} size()`);
    if (id !== diffId)
      throw new DigestMismatchError(diffId, id, `$.rootfs.diff_ids[${i}] diffId()`, {
        diffId: true,
      });
    const h = hashed[i];
    if (h === undefined) continue;
    if (h.digest !== desc.digest) throw new DigestMismatchError(desc.digest, h.digest, what);
    if (h.size !== desc.size) throw new SizeMismatchError(desc.size, h.size, what);
    if (h.diffId !== diffId) {
      throw new DigestMismatchError(diffId, h.diffId, `$.rootfs.diff_ids[${i}]`, {
        diffId: true,
      });
    }
  }
}
