import type { Digest } from './digest.js';
import type { Layer } from './layer.js';
import type { MediaTypeString } from './media-types.js';
import type { ConfigFile, Descriptor, ImageManifest, IndexManifest, Platform } from './wire.js';

/**
 * Image is a lazy container image. Every accessor is async: for images over
 * stream layers, `configFile()` waits on the layers' diffIds and `manifest()`
 * on their digests and sizes.
 * @see docs/design.md (Image and mutate)
 */
export interface Image {
  /** mediaType of the image manifest (OCI or Docker). */
  readonly mediaType: MediaTypeString;
  manifest(): Promise<ImageManifest>;
  rawManifest(): Promise<Uint8Array>;
  configFile(): Promise<ConfigFile>;
  rawConfig(): Promise<Uint8Array>;
  /** configDescriptor waits only on diffIds (not on layer digests). */
  configDescriptor(): Promise<Descriptor>;
  digest(): Promise<Digest>;
  size(): Promise<number>;
  layers(): Promise<readonly Layer[]>;
}

/** IndexChild is one entry of an index, resolved to what it points at. */
export type IndexChild =
  | { readonly kind: 'image'; readonly descriptor: Descriptor; readonly image: Image }
  | { readonly kind: 'index'; readonly descriptor: Descriptor; readonly index: ImageIndex };

/** ImageIndex is a lazy multi-platform index (or Docker manifest list). */
export interface ImageIndex {
  readonly mediaType: MediaTypeString;
  indexManifest(): Promise<IndexManifest>;
  rawManifest(): Promise<Uint8Array>;
  digest(): Promise<Digest>;
  size(): Promise<number>;
  /** children lists the entries with the image or index each points at. */
  children(): Promise<readonly IndexChild[]>;
  image(digest: Digest): Promise<Image>;
  imageIndex(digest: Digest): Promise<ImageIndex>;
  /**
   * pendingChildren lists the child images and indexes without describing
   * them, for indexes built in-process: writers push these first, so a
   * child over single-pass stream layers gets its digest from its own
   * upload instead of a deadlock. Indexes read from elsewhere omit it.
   */
  pendingChildren?(): readonly (Image | ImageIndex)[] | undefined;
}

/**
 * childrenToWrite lists what a writer must push before an index manifest:
 * `pendingChildren()` when the index has it (nothing is awaited), else the
 * described children.
 */
export async function childrenToWrite(index: ImageIndex): Promise<readonly (Image | ImageIndex)[]> {
  const pending = index.pendingChildren?.();
  if (pending !== undefined) return pending;
  return (await index.children()).map((c) => (c.kind === 'image' ? c.image : c.index));
}

/** isImageIndex tells an index from an image. */
export function isImageIndex(value: Image | ImageIndex): value is ImageIndex {
  return typeof (value as Partial<ImageIndex>).indexManifest === 'function';
}

/** IndexEntryInput is one platform image given to `imageIndex()`. */
export type IndexEntryInput = {
  readonly image: Image | ImageIndex;
  readonly platform?: Platform;
  readonly annotations?: Readonly<Record<string, string>>;
  /** artifactType of the entry's descriptor (an artifact's, as its manifest says). */
  readonly artifactType?: string;
};
