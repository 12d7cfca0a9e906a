import type { Readable } from 'node:stream';
import { digestOf, type Digest } from '../digest.js';
import { ErrorCode, LadingError } from '../errors.js';
import { isImageIndex, type Image, type ImageIndex } from '../image.js';
import { annotateIndex } from '../image-index.js';
import type { BlobSource, Layer } from '../layer.js';
import { isImageManifestMediaType, type MediaTypeString } from '../media-types.js';
import type { ConfigFile, Descriptor, History, ImageManifest, Platform } from '../wire.js';
import {
  applyPlatform,
  checkPlatform,
  compileConfigPatch,
  formatCreated,
  type ConfigPatch,
} from './config.js';
import {
  checkFamily,
  configTypeFor,
  familyOf,
  layerTypeFor,
  manifestTypeFor,
  type MediaTypeFamily,
} from './family.js';
import { encodeConfig, encodeManifest } from './serialize.js';

/** Addendum is a layer to append with the history entry and annotations that go with it. */
export interface Addendum {
  readonly layer: Layer;
  /** history entry for the layer; `{ created_by: 'lading' }` unless given. */
  readonly history?: History;
  /** annotations for the layer's descriptor, over the layer's own. */
  readonly annotations?: Readonly<Record<string, string>>;
}

/** DEFAULT_CREATED_BY is the `created_by` of history entries lading adds. */
export const DEFAULT_CREATED_BY = 'lading';

interface Changes {
  readonly adds?: readonly Addendum[];
  readonly config?: (cfg: ConfigFile) => void;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly family?: MediaTypeFamily;
}

/**
 * DescribedLayer presents a layer under the media type and annotations its
 * manifest descriptor gives it; everything else is the wrapped layer's.
 */
class DescribedLayer implements Layer {
  readonly mediaType: MediaTypeString;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly #inner: Layer;

  constructor(
    inner: Layer,
    mediaType: MediaTypeString,
    annotations: Readonly<Record<string, string>> | undefined,
  ) {
    this.#inner = inner;
    this.mediaType = mediaType;
    if (annotations !== undefined) this.annotations = annotations;
  }

  get source(): BlobSource | undefined {
    return this.#inner.source;
  }
  digest(): Promise<Digest> {
    return this.#inner.digest();
  }
  diffId(): Promise<Digest> {
    return this.#inner.diffId();
  }
  size(): Promise<number> {
    return this.#inner.size();
  }
  compressed(): Readable {
    return this.#inner.compressed();
  }
  uncompressed(): Readable {
    return this.#inner.uncompressed();
  }
  knownDescriptor(): Descriptor | undefined {
    const d = this.#inner.knownDescriptor?.();
    if (d === undefined) return undefined;
    const out: Descriptor = { ...d, mediaType: this.mediaType };
    if (this.annotations !== undefined) out.annotations = { ...this.annotations };
    return out;
  }
}

function present(
  layer: Layer,
  mediaType: MediaTypeString,
  annotations: Readonly<Record<string, string>> | undefined,
): Layer {
  if (mediaType === layer.mediaType && annotations === layer.annotations) return layer;
  return new DescribedLayer(layer, mediaType, annotations);
}

function mergedAnnotations(a: Addendum): Readonly<Record<string, string>> | undefined {
  if (a.annotations === undefined) return a.layer.annotations;
  return { ...(a.layer.annotations ?? {}), ...a.annotations };
}

/** memo caches a computation; a failure is forgotten so a retry can recompute. */
function memo<T>(compute: () => Promise<T>): () => Promise<T> {
  let cached: Promise<T> | undefined;
  return () => {
    cached ??= compute().catch((err: unknown) => {
      cached = undefined;
      throw err;
    });
    return cached;
  };
}

/**
 * MutatedImage is a root image with a list of changes on top. Chained
 * mutations share one flat list (a mutation of a MutatedImage extends its
 * parent's list), so computing the result is linear in the number of
 * changes and intermediate images are never computed. Every value is
 * computed on first use and memoized: the config waits only on the new
 * layers' diffIds, the manifest on their digests and sizes too. Root layers
 * are described from the root's manifest and config, never read.
 */
class MutatedImage implements Image {
  readonly mediaType: MediaTypeString;
  readonly #root: Image;
  readonly #parent: MutatedImage | undefined;
  readonly #change: Changes;
  /** #override is the family the last step that set one asked for. */
  readonly #override: MediaTypeFamily | undefined;
  readonly #family: MediaTypeFamily;
  /** #retyped says some step changed the family, so every media type is mapped. */
  readonly #retyped: boolean;
  readonly #configTouched: boolean;
  #flat: { steps: readonly Changes[]; adds: readonly Addendum[] } | undefined;

  constructor(base: Image, change: Changes) {
    // Constant work per mutation: the step list is only walked when a value
    // is first computed.
    const parent = base instanceof MutatedImage ? base : undefined;
    this.#parent = parent;
    this.#root = parent === undefined ? base : parent.#root;
    this.#change = change;
    this.#override = change.family ?? (parent === undefined ? undefined : parent.#override);
    this.#retyped = this.#override !== undefined;
    this.#family = this.#override ?? familyOf(this.#root.mediaType);
    this.#configTouched =
      (parent !== undefined && parent.#configTouched) ||
      (change.adds?.length ?? 0) > 0 ||
      change.config !== undefined;
    this.mediaType =
      !this.#retyped && isImageManifestMediaType(this.#root.mediaType)
        ? this.#root.mediaType
        : manifestTypeFor(this.#family);
  }

  get #steps(): readonly Changes[] {
    return this.#flatten().steps;
  }

  get #adds(): readonly Addendum[] {
    return this.#flatten().adds;
  }

  #flatten(): { steps: readonly Changes[]; adds: readonly Addendum[] } {
    if (this.#flat === undefined) {
      const steps: Changes[] = [this.#change];
      for (let at = this.#parent; at !== undefined; at = at.#parent) steps.push(at.#change);
      steps.reverse();
      this.#flat = { steps, adds: steps.flatMap((c) => c.adds ?? []) };
    }
    return this.#flat;
  }

  readonly #config = memo(async (): Promise<ConfigFile> => {
    const [root, diffIds] = await Promise.all([
      this.#root.configFile(),
      Promise.all(this.#adds.map((a) => a.layer.diffId())),
    ]);
    const cfg = structuredClone(root);
    let next = 0;
    for (const step of this.#steps) {
      const adds = step.adds ?? [];
      if (adds.length > 0) {
        const ids = diffIds.slice(next, next + adds.length);
        next += adds.length;
        // cfg is our own clone: push in place (spreading per step is quadratic).
        cfg.rootfs.diff_ids.push(...ids);
        (cfg.history ??= []).push(
          ...adds.map((a) => ({ ...(a.history ?? { created_by: DEFAULT_CREATED_BY }) })),
        );
      }
      step.config?.(cfg);
    }
    return cfg;
  });

  readonly #rawConfig = memo(async () => encodeConfig(await this.#config()));

  readonly #configDescriptor = memo(async (): Promise<Descriptor> => {
    const [root, raw] = await Promise.all([
      this.#root.configDescriptor(),
      this.#configTouched ? this.#rawConfig() : undefined,
    ]);
    const mediaType = this.#retyped ? configTypeFor(root.mediaType, this.#family) : root.mediaType;
    if (raw === undefined) return { ...root, mediaType };
    return { mediaType, digest: digestOf(raw), size: raw.length };
  });

  readonly #manifest = memo(async (): Promise<ImageManifest> => {
    const [root, config, added] = await Promise.all([
      this.#root.manifest(),
      this.#configDescriptor(),
      Promise.all(this.#adds.map((a) => this.#describe(a))),
    ]);
    const m = structuredClone(root);
    m.schemaVersion = 2;
    m.mediaType = this.mediaType;
    m.config = config;
    m.layers = [
      ...(this.#retyped
        ? m.layers.map((d) => ({ ...d, mediaType: layerTypeFor(d.mediaType, this.#family) }))
        : m.layers),
      ...added,
    ];
    for (const step of this.#steps) {
      if (step.annotations !== undefined) {
        m.annotations = { ...(m.annotations ?? {}), ...step.annotations };
      }
    }
    return m;
  });

  readonly #rawManifest = memo(async () => encodeManifest(await this.#manifest()));

  async #describe(a: Addendum): Promise<Descriptor> {
    const [digest, size] = await Promise.all([a.layer.digest(), a.layer.size()]);
    const d: Descriptor = {
      mediaType: layerTypeFor(a.layer.mediaType, this.#family),
      digest,
      size,
    };
    const urls = a.layer.knownDescriptor?.()?.urls;
    if (urls !== undefined) d.urls = [...urls];
    const annotations = mergedAnnotations(a);
    if (annotations !== undefined) d.annotations = { ...annotations };
    return d;
  }

  async manifest(): Promise<ImageManifest> {
    return structuredClone(await this.#manifest());
  }
  async rawManifest(): Promise<Uint8Array> {
    return (await this.#rawManifest()).slice();
  }
  async configFile(): Promise<ConfigFile> {
    if (!this.#configTouched) return this.#root.configFile();
    return structuredClone(await this.#config());
  }
  async rawConfig(): Promise<Uint8Array> {
    if (!this.#configTouched) return this.#root.rawConfig();
    return (await this.#rawConfig()).slice();
  }
  async configDescriptor(): Promise<Descriptor> {
    return { ...(await this.#configDescriptor()) };
  }
  async digest(): Promise<Digest> {
    return digestOf(await this.#rawManifest());
  }
  async size(): Promise<number> {
    return (await this.#rawManifest()).length;
  }
  async layers(): Promise<readonly Layer[]> {
    const root = await this.#root.layers();
    return [
      ...(this.#retyped
        ? root.map((l) => present(l, layerTypeFor(l.mediaType, this.#family), l.annotations))
        : root),
      ...this.#adds.map((a) =>
        present(a.layer, layerTypeFor(a.layer.mediaType, this.#family), mergedAnnotations(a)),
      ),
    ];
  }
}

function isLayer(item: Layer | Addendum): item is Layer {
  return typeof (item as Partial<Layer>).digest === 'function';
}

function checkImage(image: Image): void {
  if (typeof (image as Partial<Image> | null)?.manifest !== 'function') {
    throw new LadingError(ErrorCode.InvalidArgument, 'expected an Image');
  }
}

/**
 * appendLayers returns a new lazy image: `base` with `layers` on top, each
 * a {@link Layer} or an {@link Addendum} (layer with history and
 * annotations). Each new layer gets a history entry. Layer descriptors take
 * the layer's media type, mapped into the image's family (an OCI gzip layer
 * on a Docker base is described as a Docker gzip layer).
 * Nothing is read: `configFile()` waits on the new layers' diffIds,
 * `manifest()` on their digests and sizes.
 * @throws INVALID_ARGUMENT when an item is neither a Layer nor an Addendum.
 */
export function appendLayers(base: Image, ...layers: readonly (Layer | Addendum)[]): Image {
  checkImage(base);
  const adds = layers.map((item): Addendum => {
    if (isLayer(item)) return { layer: item };
    if (typeof (item as Partial<Addendum> | null)?.layer?.digest !== 'function') {
      throw new LadingError(ErrorCode.InvalidArgument, 'appendLayers takes Layers or { layer }');
    }
    return item;
  });
  return new MutatedImage(base, { adds });
}

/**
 * withConfig returns a new lazy image whose config has `patch` applied
 * (see {@link ConfigPatch} for the merge rules).
 * @throws INVALID_ARGUMENT for malformed env entries, ports or values.
 */
export function withConfig(base: Image, patch: ConfigPatch): Image {
  checkImage(base);
  return new MutatedImage(base, { config: compileConfigPatch(patch) });
}

/**
 * withAnnotations returns a new lazy image (or index) whose manifest
 * annotations include `annotations`, over any existing ones.
 * @throws INVALID_ARGUMENT for a non-string value.
 */
export function withAnnotations(base: Image, annotations: Readonly<Record<string, string>>): Image;
export function withAnnotations(
  base: ImageIndex,
  annotations: Readonly<Record<string, string>>,
): ImageIndex;
export function withAnnotations(
  base: Image | ImageIndex,
  annotations: Readonly<Record<string, string>>,
): Image | ImageIndex {
  for (const [k, v] of Object.entries(annotations)) {
    if (typeof v !== 'string') {
      throw new LadingError(ErrorCode.InvalidArgument, `annotation ${k} must be a string`);
    }
  }
  if (typeof (base as unknown) !== 'object' || (base as unknown) === null) {
    throw new LadingError(ErrorCode.InvalidArgument, 'expected an Image or ImageIndex');
  }
  if (isImageIndex(base)) return annotateIndex(base, annotations);
  checkImage(base);
  return new MutatedImage(base, { annotations: { ...annotations } });
}

/**
 * withCreated returns a new lazy image whose config `created` and every
 * history entry's `created` are `date` (as ggcr's `mutate.Time` does for
 * the config); with `history: false`, the config's only (a base image's
 * history keeps its dates when layers are added on top, as BuildKit and
 * crane keep them). A number is milliseconds since the epoch.
 * @throws INVALID_ARGUMENT for an invalid date.
 */
export function withCreated(
  base: Image,
  date: Date | string | number,
  options: { readonly history?: boolean } = {},
): Image {
  checkImage(base);
  const created = formatCreated(date);
  const history = options.history !== false;
  return new MutatedImage(base, {
    config: (cfg) => {
      cfg.created = created;
      if (history && cfg.history !== undefined)
        cfg.history = cfg.history.map((h) => ({ ...h, created }));
    },
  });
}

/**
 * withPlatform returns a new lazy image whose config describes `platform`
 * (fields the platform lacks, such as a stale `variant`, are removed).
 * @throws INVALID_ARGUMENT for a platform without architecture or os.
 */
export function withPlatform(base: Image, platform: Platform): Image {
  checkImage(base);
  const p = structuredClone(checkPlatform(platform));
  return new MutatedImage(base, {
    config: (cfg) => {
      applyPlatform(cfg, p);
    },
  });
}

/**
 * withMediaTypeFamily returns a new lazy image using OCI or Docker media
 * types for its manifest, config and (gzip) layers. Blob bytes, and so
 * layer and config digests, are unchanged.
 * @throws INVALID_ARGUMENT for an unknown family.
 */
export function withMediaTypeFamily(base: Image, family: MediaTypeFamily): Image {
  checkImage(base);
  return new MutatedImage(base, { family: checkFamily(family) });
}
