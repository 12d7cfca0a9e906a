import type { Readable } from 'node:stream';
import {
  ErrorCode,
  LadingError,
  parseConfigFile,
  parseManifest,
  isManifestMediaType,
  parseReference,
  selectPlatform,
  type ManifestLoader,
  type BlobSource,
  type ConfigFile,
  type Descriptor,
  type Digest,
  type Image,
  type ImageIndex,
  type ImageManifest,
  type IndexChild,
  type IndexManifest,
  type IoOptions,
  type Layer,
  type MediaTypeString,
  type Platform,
  type Reference,
  DescribedLayer,
} from '@lading/core';
import { deferredStream } from '@lading/core/internal';
import {
  MANIFEST_SIZE_LIMIT,
  RegistryClient,
  type FetchedManifest,
  type RemoteOptions,
} from './client.js';
import { readWhole } from './internal/transport/index.js';

/** PullOptions configure {@link pull}. */
export interface PullOptions extends RemoteOptions {
  /** platform picks one child of an index: `os/arch[/variant]` or a Platform. */
  readonly platform?: string | Platform;
}

/**
 * RemoteLayer is a layer that lives in a registry: its descriptor is known
 * without I/O, its bytes download only when `compressed()` or
 * `uncompressed()` is called, and `source` lets writers mount it.
 */
export class RemoteLayer extends DescribedLayer {
  readonly source: BlobSource;
  readonly #client: RegistryClient;

  /** @internal */
  constructor(
    client: RegistryClient,
    repository: string,
    descriptor: Descriptor,
    diffId: () => Promise<Digest>,
    signal: AbortSignal | undefined,
  ) {
    super(descriptor, diffId, signal);
    this.#client = client;
    this.source = { registry: client.registry, repository };
  }

  /**
   * location resolves where the blob's bytes really are (following the
   * registry's redirects with HEAD, no data transferred).
   */
  location(options: IoOptions = {}): Promise<string> {
    return this.#client.blobLocation(this.source.repository, this.described.digest, {
      signal: options.signal ?? this.signal,
    });
  }

  /**
   * descriptor is the layer's descriptor with the URL the registry
   * redirects to in `urls` (when it redirects off its own origin).
   */
  async descriptor(options: IoOptions = {}): Promise<Descriptor> {
    const where = await this.location(options);
    const d = this.knownDescriptor();
    if (new URL(where).origin !== this.#client.baseUrl) d.urls = [where];
    return d;
  }

  /** compressed streams the blob from the registry, opened when first read. */
  compressed(): Readable {
    return deferredStream(() =>
      this.#client.getBlob(this.source.repository, this.described.digest, {
        size: this.described.size,
        signal: this.signal,
      }),
    );
  }
}

/** ManifestOrigin is where a {@link RemoteManifest} was read from, and with what. */
export interface ManifestOrigin {
  readonly client: RegistryClient;
  readonly repository: string;
  readonly fetched: FetchedManifest;
  readonly signal: AbortSignal | undefined;
}

/**
 * RemoteManifest is what {@link RemoteImage} and {@link RemoteIndex} share:
 * the manifest as fetched (bytes, digest, size, media type) and the client,
 * repository and signal that later reads use.
 */
export abstract class RemoteManifest {
  readonly mediaType: MediaTypeString;
  readonly #origin: ManifestOrigin;

  /** @internal */
  constructor(origin: ManifestOrigin) {
    this.#origin = origin;
    this.mediaType = origin.fetched.mediaType;
  }

  /** @internal origin is where the manifest came from, for the subclasses' reads. */
  protected get origin(): ManifestOrigin {
    return this.#origin;
  }

  rawManifest(): Promise<Uint8Array> {
    return Promise.resolve(Buffer.from(this.#origin.fetched.bytes));
  }
  digest(): Promise<Digest> {
    return Promise.resolve(this.#origin.fetched.digest);
  }
  size(): Promise<number> {
    return Promise.resolve(this.#origin.fetched.size);
  }
}

/**
 * RemoteImage is an image read from a registry: manifest in memory,
 * config fetched on first use, layers {@link RemoteLayer}s.
 */
export class RemoteImage extends RemoteManifest implements Image {
  readonly reference: string;
  readonly #manifest: ImageManifest;
  #config: Promise<Buffer> | undefined;
  #layers: RemoteLayer[] | undefined;

  /** @internal */
  constructor(origin: ManifestOrigin, manifest: ImageManifest) {
    super(origin);
    this.#manifest = manifest;
    this.reference = `${origin.client.registry}/${origin.repository}@${origin.fetched.digest}`;
  }

  manifest(): Promise<ImageManifest> {
    return Promise.resolve(structuredClone(this.#manifest));
  }
  configDescriptor(): Promise<Descriptor> {
    return Promise.resolve({ ...this.#manifest.config });
  }

  rawConfig(): Promise<Uint8Array> {
    const p = (this.#config ??= (async () => {
      const c = this.#manifest.config;
      if (c.size > MANIFEST_SIZE_LIMIT) {
        throw new LadingError(ErrorCode.ManifestTooLarge, `config ${c.digest} is ${c.size} bytes`);
      }
      const { client, repository, signal } = this.origin;
      return readSmallBlob(client, repository, c, signal);
    })());
    p.catch(() => {
      if (this.#config === p) this.#config = undefined;
    });
    return p.then((b) => Buffer.from(b));
  }

  async configFile(): Promise<ConfigFile> {
    return parseConfigFile(await this.rawConfig());
  }

  layers(): Promise<readonly Layer[]> {
    const { client, repository, signal } = this.origin;
    this.#layers ??= this.#manifest.layers.map(
      (d, i) =>
        new RemoteLayer(
          client,
          repository,
          d,
          DescribedLayer.diffIdFromConfig(() => this.configFile(), i),
          signal,
        ),
    );
    return Promise.resolve(this.#layers);
  }
}

/** RemoteIndex is an index (or Docker manifest list) read from a registry. */
export class RemoteIndex extends RemoteManifest implements ImageIndex {
  readonly #index: IndexManifest;

  /** @internal */
  constructor(origin: ManifestOrigin, index: IndexManifest) {
    super(origin);
    this.#index = index;
  }

  indexManifest(): Promise<IndexManifest> {
    return Promise.resolve(structuredClone(this.#index));
  }

  async children(): Promise<readonly IndexChild[]> {
    const out: IndexChild[] = [];
    for (const d of this.#index.manifests) {
      const child = await loadManifest(this.origin, d.digest);
      out.push(
        child instanceof RemoteIndex
          ? { kind: 'index', descriptor: d, index: child }
          : { kind: 'image', descriptor: d, image: child },
      );
    }
    return out;
  }

  async image(digest: Digest): Promise<Image> {
    const m = await loadManifest(this.origin, digest);
    if (m instanceof RemoteIndex)
      throw new LadingError(ErrorCode.UnsupportedMediaType, `${digest} is an index, not an image`);
    return m;
  }

  async imageIndex(digest: Digest): Promise<ImageIndex> {
    const m = await loadManifest(this.origin, digest);
    if (!(m instanceof RemoteIndex))
      throw new LadingError(ErrorCode.UnsupportedMediaType, `${digest} is an image, not an index`);
    return m;
  }

  /**
   * forPlatform returns the child image matching `platform` (nested indexes
   * followed), with the matching rules of `platformMatches` in @lading/core.
   * @throws NOT_FOUND naming the platforms the index offers.
   */
  async forPlatform(platform: string | Platform): Promise<Image> {
    const { fetched } = this.origin;
    const root = { mediaType: fetched.mediaType, digest: fetched.digest, size: fetched.size };
    const d = await selectPlatform(root, platform, loaderFor(this.origin));
    return this.image(d.digest);
  }
}

/** loaderFor reads manifests (by digest) and configs (as blobs) of one repository, capped. */
function loaderFor(from: Omit<ManifestOrigin, 'fetched'>): ManifestLoader {
  const { client, repository, signal } = from;
  return async (d) => {
    if (isManifestMediaType(d.mediaType)) {
      return (await client.getManifest(repository, d.digest, { signal })).bytes;
    }
    if (d.size > MANIFEST_SIZE_LIMIT) {
      throw new LadingError(ErrorCode.ManifestTooLarge, `config ${d.digest} is ${d.size} bytes`);
    }
    return readSmallBlob(client, repository, d, signal);
  };
}

/**
 * readSmallBlob reads a config (a blob of at most 4 MiB) whole, verified;
 * a connection that drops before its end is retried like one that drops
 * before the headers.
 * @throws NETWORK, DIGEST_MISMATCH, SIZE_MISMATCH, MANIFEST_TOO_LARGE, ABORTED
 */
function readSmallBlob(
  client: RegistryClient,
  repository: string,
  d: Descriptor,
  signal: AbortSignal | undefined,
): Promise<Buffer> {
  const request = {
    method: 'GET',
    url: client.transport.url(`/v2/${repository}/blobs/${d.digest}`),
  };
  return client.transport.withRetry(async () => {
    const body = await client.getBlob(repository, d.digest, { size: d.size, signal });
    return readWhole(body, MANIFEST_SIZE_LIMIT, request, signal);
  }, signal);
}

/** loadManifest fetches `reference` and wraps it as a {@link RemoteImage} or a {@link RemoteIndex}. */
async function loadManifest(
  from: Omit<ManifestOrigin, 'fetched'>,
  reference: string,
): Promise<RemoteImage | RemoteIndex> {
  const { client, repository, signal } = from;
  const fetched = await client.getManifest(repository, reference, { signal });
  const parsed = parseManifest(fetched.bytes, fetched.mediaType);
  const origin = {
    client,
    repository,
    signal,
    fetched: { ...fetched, mediaType: parsed.mediaType },
  };
  return parsed.kind === 'index'
    ? new RemoteIndex(origin, parsed.manifest)
    : new RemoteImage(origin, parsed.manifest);
}

/**
 * pull reads an image lazily: only the manifest is fetched; the config on
 * first use; layer bytes when a layer is read. With `platform`, an index is
 * resolved to its matching child; without, an index comes back as an
 * {@link ImageIndex}. Appending to a pulled image and writing it back to
 * the same registry skips or mounts the base layers instead of downloading
 * them (they carry `knownDescriptor()` and `source`).
 * @throws NOT_FOUND, UNAUTHORIZED, DIGEST_MISMATCH, MANIFEST_TOO_LARGE, NETWORK
 */
export async function pull(
  ref: string | Reference,
  options: PullOptions = {},
): Promise<Image | ImageIndex> {
  const r = typeof ref === 'string' ? parseReference(ref) : ref;
  const client = new RegistryClient(r.registry, options);
  const m = await loadManifest(
    { client, repository: r.repository, signal: options.signal },
    r.digest ?? r.tag ?? 'latest',
  );
  if (options.platform === undefined) return m;
  if (m instanceof RemoteIndex) return m.forPlatform(options.platform);
  // A single image must be for the platform asked, as an index child would.
  const root = { mediaType: m.mediaType, digest: await m.digest(), size: await m.size() };
  await selectPlatform(root, options.platform, async (d) =>
    d.digest === root.digest ? m.rawManifest() : m.rawConfig(),
  );
  return m;
}

/** pullImage is {@link pull} that insists on an image (an index needs `platform`). @throws UNSUPPORTED_MEDIA_TYPE */
export async function pullImage(
  ref: string | Reference,
  options: PullOptions = {},
): Promise<Image> {
  const m = await pull(ref, options);
  if (m instanceof RemoteIndex) {
    throw new LadingError(
      ErrorCode.UnsupportedMediaType,
      `${String(ref)} is an index; pass { platform }`,
    );
  }
  return m as Image;
}

/** blobLocation resolves where a blob of `ref`'s repository really lives (redirects followed with HEAD). */
export async function blobLocation(
  ref: string | Reference,
  digest: Digest,
  options: RemoteOptions = {},
): Promise<string> {
  const r = typeof ref === 'string' ? parseReference(ref) : ref;
  return new RegistryClient(r.registry, options).blobLocation(r.repository, digest, options);
}
