import { digestOf, type Digest } from './digest.js';
import { ErrorCode, LadingError } from './errors.js';
import {
  isImageIndex,
  type Image,
  type ImageIndex,
  type IndexChild,
  type IndexEntryInput,
} from './image.js';
import { MediaType, type MediaTypeString } from './media-types.js';
import { checkPlatform, platformOf } from './mutate/config.js';
import { checkFamily, familyOf, indexTypeFor, type MediaTypeFamily } from './mutate/family.js';
import { encodeManifest } from './mutate/serialize.js';
import type { Descriptor, IndexManifest } from './wire.js';

/** ImageIndexOptions configure {@link imageIndex}. */
export interface ImageIndexOptions {
  /**
   * mediaTypeFamily picks an OCI index or a Docker manifest list. Unless
   * set: Docker when every entry is a Docker image manifest, OCI otherwise
   * (a manifest list cannot nest lists).
   */
  readonly mediaTypeFamily?: MediaTypeFamily;
  /** annotations of the index manifest. */
  readonly annotations?: Readonly<Record<string, string>>;
}

/**
 * EncodedIndex answers the manifest bytes, digest and size of an index from
 * one memoized encoding of {@link indexManifest} (forgotten if it fails, so
 * a later call retries).
 */
abstract class EncodedIndex {
  #raw: Promise<Uint8Array> | undefined;

  abstract indexManifest(): Promise<IndexManifest>;

  protected encoded(): Promise<Uint8Array> {
    this.#raw ??= this.indexManifest()
      .then(encodeManifest)
      .catch((err: unknown) => {
        this.#raw = undefined;
        throw err;
      });
    return this.#raw;
  }
  async rawManifest(): Promise<Uint8Array> {
    return (await this.encoded()).slice();
  }
  async digest(): Promise<Digest> {
    return digestOf(await this.encoded());
  }
  async size(): Promise<number> {
    return (await this.encoded()).length;
  }
}

class BuiltIndex extends EncodedIndex implements ImageIndex {
  readonly mediaType: MediaTypeString;
  readonly #entries: readonly IndexEntryInput[];
  readonly #annotations: Readonly<Record<string, string>> | undefined;
  #children: Promise<readonly IndexChild[]> | undefined;

  constructor(
    entries: readonly IndexEntryInput[],
    family: MediaTypeFamily,
    annotations: Readonly<Record<string, string>> | undefined,
  ) {
    super();
    this.#entries = entries;
    this.#annotations = annotations;
    this.mediaType = indexTypeFor(family);
  }

  async #describe(entry: IndexEntryInput): Promise<IndexChild> {
    const child = entry.image;
    const [digest, size, platform] = await Promise.all([
      child.digest(),
      child.size(),
      entry.platform !== undefined || isImageIndex(child)
        ? entry.platform
        : child.configFile().then(platformOf),
    ]);
    const descriptor: Descriptor = { mediaType: child.mediaType, digest, size };
    if (entry.artifactType !== undefined) descriptor.artifactType = entry.artifactType;
    if (entry.annotations !== undefined) descriptor.annotations = { ...entry.annotations };
    if (platform !== undefined) descriptor.platform = structuredClone(platform);
    return isImageIndex(child)
      ? { kind: 'index', descriptor, index: child }
      : { kind: 'image', descriptor, image: child };
  }

  pendingChildren(): readonly (Image | ImageIndex)[] {
    return this.#entries.map((e) => e.image);
  }

  #childrenMemo(): Promise<readonly IndexChild[]> {
    this.#children ??= Promise.all(this.#entries.map((e) => this.#describe(e))).catch(
      (err: unknown) => {
        this.#children = undefined;
        throw err;
      },
    );
    return this.#children;
  }

  async indexManifest(): Promise<IndexManifest> {
    const children = await this.#childrenMemo();
    const m: IndexManifest = {
      schemaVersion: 2,
      mediaType: this.mediaType,
      manifests: children.map((c) => structuredClone(c.descriptor)),
    };
    if (this.#annotations !== undefined) m.annotations = { ...this.#annotations };
    return m;
  }
  async children(): Promise<readonly IndexChild[]> {
    return (await this.#childrenMemo()).map((c) => ({
      ...c,
      descriptor: structuredClone(c.descriptor),
    }));
  }
  async image(digest: Digest): Promise<Image> {
    for (const c of await this.#childrenMemo()) {
      if (c.kind === 'image' && c.descriptor.digest === digest) return c.image;
    }
    throw new LadingError(ErrorCode.NotFound, `no image ${digest} in this index`);
  }
  async imageIndex(digest: Digest): Promise<ImageIndex> {
    for (const c of await this.#childrenMemo()) {
      if (c.kind === 'index' && c.descriptor.digest === digest) return c.index;
    }
    throw new LadingError(ErrorCode.NotFound, `no index ${digest} in this index`);
  }
}

/**
 * imageIndex builds a lazy multi-platform index (or Docker manifest list).
 * Each entry's descriptor carries the entry's platform or, for an image
 * given without one, the platform its config describes. Nothing is computed
 * until asked.
 * @throws INVALID_ARGUMENT for an entry without an image or with a malformed platform.
 * @see https://github.com/opencontainers/image-spec/blob/main/image-index.md
 */
export function imageIndex(
  entries: readonly IndexEntryInput[],
  options: ImageIndexOptions = {},
): ImageIndex {
  for (const e of entries) {
    const img = (e as Partial<IndexEntryInput> | null)?.image as Partial<Image> | undefined;
    if (typeof img?.digest !== 'function') {
      throw new LadingError(ErrorCode.InvalidArgument, 'every index entry needs an image or index');
    }
    if (e.platform !== undefined) checkPlatform(e.platform);
  }
  const family =
    options.mediaTypeFamily !== undefined
      ? checkFamily(options.mediaTypeFamily)
      : entries.length > 0 && entries.every((e) => e.image.mediaType === MediaType.DockerManifest)
        ? 'docker'
        : familyOf(undefined);
  return new BuiltIndex([...entries], family, options.annotations);
}

/** AnnotatedIndex is an index with annotations merged into its manifest. */
class AnnotatedIndex extends EncodedIndex implements ImageIndex {
  readonly mediaType: MediaTypeString;
  readonly #base: ImageIndex;
  readonly #annotations: Readonly<Record<string, string>>;

  constructor(base: ImageIndex, annotations: Readonly<Record<string, string>>) {
    super();
    this.#base = base;
    this.#annotations = annotations;
    this.mediaType = base.mediaType;
  }

  async indexManifest(): Promise<IndexManifest> {
    const m = structuredClone(await this.#base.indexManifest());
    m.annotations = { ...(m.annotations ?? {}), ...this.#annotations };
    return m;
  }
  pendingChildren(): readonly (Image | ImageIndex)[] | undefined {
    return this.#base.pendingChildren?.();
  }

  children(): Promise<readonly IndexChild[]> {
    return this.#base.children();
  }
  image(digest: Digest): Promise<Image> {
    return this.#base.image(digest);
  }
  imageIndex(digest: Digest): Promise<ImageIndex> {
    return this.#base.imageIndex(digest);
  }
}

/** annotateIndex returns `base` with `annotations` merged into its index manifest. */
export function annotateIndex(
  base: ImageIndex,
  annotations: Readonly<Record<string, string>>,
): ImageIndex {
  return new AnnotatedIndex(base, { ...annotations });
}
