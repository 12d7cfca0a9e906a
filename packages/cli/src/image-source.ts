import type { Readable } from 'node:stream';
import {
  ErrorCode,
  LadingError,
  MAX_MANIFEST_SIZE,
  copy,
  fetchVerified,
  fileSystemError,
  isImageIndex,
  parseConfigFile,
  parseManifest,
  selectPlatform,
  writeImage,
  writeImageIndex,
  type ConfigFile,
  type Descriptor,
  type Digest,
  type Image,
  type ImageIndex,
  type ImageManifest,
  type IndexChild,
  type IndexManifest,
  type Layer,
  type MediaTypeString,
  type ProgressEmitter,
  type Target,
  DescribedLayer,
} from '@lading/core';
import { stat } from 'node:fs/promises';
import { checkOutputFile, deferredStream } from '@lading/core/internal';
import { ociLayout } from '@lading/layout';
import {
  checkPushPermission,
  pull,
  writeAny,
  type RemoteOptions,
  type WriteResult,
} from '@lading/remote';
import { UsageError } from './exit.js';
import { namesDigest, parseLocation, type Location } from './transports.js';
import { abandoning, openTarget, type OpenedTarget } from './commands/common.js';

// Images and indexes read from any Target (an OCI layout or docker archive):
// manifests and configs are small and verified; layer bytes stream from the
// target only when a writer asks for them, and carry their descriptor so a
// writer can skip what the destination has.

class TargetLayer extends DescribedLayer {
  readonly #target: Target;

  constructor(
    target: Target,
    desc: Descriptor,
    diffId: () => Promise<Digest>,
    signal: AbortSignal | undefined,
  ) {
    super(desc, diffId, signal);
    this.#target = target;
  }

  compressed(): Readable {
    return deferredStream(() => this.#target.fetch(this.described, { signal: this.signal }));
  }
}

/** TargetManifest is what images and indexes read from a target share. */
abstract class TargetManifest {
  readonly mediaType: MediaTypeString;
  protected readonly target: Target;
  protected readonly signal: AbortSignal | undefined;
  readonly #desc: Descriptor;
  readonly #raw: Buffer;

  constructor(target: Target, desc: Descriptor, raw: Buffer, signal: AbortSignal | undefined) {
    this.target = target;
    this.#desc = desc;
    this.#raw = raw;
    this.mediaType = desc.mediaType;
    this.signal = signal;
  }

  rawManifest(): Promise<Uint8Array> {
    return Promise.resolve(Buffer.from(this.#raw));
  }
  digest(): Promise<Digest> {
    return Promise.resolve(this.#desc.digest);
  }
  size(): Promise<number> {
    return Promise.resolve(this.#desc.size);
  }
}

class TargetImage extends TargetManifest implements Image {
  readonly #manifest: ImageManifest;
  #config: Promise<Buffer> | undefined;
  #layers: TargetLayer[] | undefined;

  constructor(
    target: Target,
    desc: Descriptor,
    raw: Buffer,
    manifest: ImageManifest,
    signal: AbortSignal | undefined,
  ) {
    super(target, desc, raw, signal);
    this.#manifest = manifest;
  }

  manifest(): Promise<ImageManifest> {
    return Promise.resolve(structuredClone(this.#manifest));
  }
  configDescriptor(): Promise<Descriptor> {
    return Promise.resolve({ ...this.#manifest.config });
  }
  rawConfig(): Promise<Uint8Array> {
    this.#config ??= fetchVerified(this.target, this.#manifest.config, { signal: this.signal });
    return this.#config.then((b) => Buffer.from(b));
  }
  async configFile(): Promise<ConfigFile> {
    return parseConfigFile(await this.rawConfig());
  }
  layers(): Promise<readonly Layer[]> {
    this.#layers ??= this.#manifest.layers.map(
      (d, i) =>
        new TargetLayer(
          this.target,
          d,
          DescribedLayer.diffIdFromConfig(() => this.configFile(), i),
          this.signal,
        ),
    );
    return Promise.resolve(this.#layers);
  }
}

class TargetIndex extends TargetManifest implements ImageIndex {
  readonly #index: IndexManifest;

  constructor(
    target: Target,
    desc: Descriptor,
    raw: Buffer,
    index: IndexManifest,
    signal: AbortSignal | undefined,
  ) {
    super(target, desc, raw, signal);
    this.#index = index;
  }

  indexManifest(): Promise<IndexManifest> {
    return Promise.resolve(structuredClone(this.#index));
  }
  async children(): Promise<readonly IndexChild[]> {
    const out: IndexChild[] = [];
    for (const d of this.#index.manifests) {
      const child = await readContent(this.target, d, this.signal);
      out.push(
        isImageIndex(child)
          ? { kind: 'index', descriptor: d, index: child }
          : { kind: 'image', descriptor: d, image: child },
      );
    }
    return out;
  }
  async image(digest: Digest): Promise<Image> {
    const child = await this.#child(digest);
    if (isImageIndex(child))
      throw new LadingError(ErrorCode.UnsupportedMediaType, `${digest} is an index, not an image`);
    return child;
  }
  async imageIndex(digest: Digest): Promise<ImageIndex> {
    const child = await this.#child(digest);
    if (!isImageIndex(child))
      throw new LadingError(ErrorCode.UnsupportedMediaType, `${digest} is an image, not an index`);
    return child;
  }
  #child(digest: Digest): Promise<Image | ImageIndex> {
    const d = this.#index.manifests.find((m) => m.digest === digest);
    if (d === undefined)
      return Promise.reject(new LadingError(ErrorCode.NotFound, `${digest} is not in the index`));
    return readContent(this.target, d, this.signal);
  }
}

/**
 * readContent reads the image or index `desc` names in `target`: the
 * manifest now (size-capped, verified), the rest on demand.
 * @throws NOT_FOUND, INVALID_MANIFEST, DIGEST_MISMATCH, MANIFEST_TOO_LARGE
 */
export async function readContent(
  target: Target,
  desc: Descriptor,
  signal: AbortSignal | undefined,
): Promise<Image | ImageIndex> {
  if (desc.size > MAX_MANIFEST_SIZE)
    throw new LadingError(ErrorCode.ManifestTooLarge, `manifest ${desc.digest} is too large`);
  const raw = Buffer.from(await fetchVerified(target, desc, { signal }));
  const parsed = parseManifest(raw, desc.mediaType);
  return parsed.kind === 'index'
    ? new TargetIndex(target, desc, raw, parsed.manifest, signal)
    : new TargetImage(target, desc, raw, parsed.manifest, signal);
}

/** Source is an image or index opened at a location, with what it was read from. */
export type Source = {
  readonly content: Image | ImageIndex;
  readonly opened: OpenedTarget;
};

/** openSource opens LOCATION for reading as an image or index. */
export async function openSource(
  text: string,
  options: RemoteOptions,
  signal: AbortSignal,
): Promise<Source> {
  const location = parseLocation(text);
  const opened = openTarget(location, options, 'read');
  // From a registry, use the remote reader: its layers know their
  // repository, so a push to another repository of the same registry
  // mounts. Its GET of the manifest by tag is the only request.
  if (location.kind === 'registry') {
    return { content: await pull(location.reference, { ...options, signal }), opened };
  }
  const descriptor = await opened.target.resolve(opened.readRef, { signal, fetchNext: true });
  return { content: await readContent(opened.target, descriptor, signal), opened };
}

/**
 * pickImage returns `content` when it is an image (checked against
 * `platform` when one is given), else its child for `platform` (default
 * linux/amd64), through nested indexes, with core's one platform matcher.
 * @throws NOT_FOUND naming the platforms offered
 */
export async function pickImage(
  content: Image | ImageIndex,
  platform: string | undefined,
): Promise<Image> {
  if (!isImageIndex(content) && platform === undefined) return content;
  const root: Descriptor = {
    mediaType: content.mediaType,
    digest: await content.digest(),
    size: await content.size(),
  };
  if (!isImageIndex(content)) {
    const image = content;
    const config = await image.configDescriptor();
    await selectPlatform(root, platform ?? 'linux/amd64', (d) =>
      d.digest === config.digest ? image.rawConfig() : image.rawManifest(),
    );
    return image;
  }
  // Each index met on the way, and for every child digest the index listing it.
  const indexes = new Map<string, ImageIndex>([[root.digest, content]]);
  const owners = new Map<string, ImageIndex>();
  const load = async (d: Descriptor): Promise<Uint8Array> => {
    let index = indexes.get(d.digest);
    if (index === undefined) {
      const owner = owners.get(d.digest);
      if (owner === undefined)
        throw new LadingError(ErrorCode.NotFound, `${d.digest} is not in the index`);
      index = await owner.imageIndex(d.digest);
      indexes.set(d.digest, index);
    }
    for (const child of (await index.indexManifest()).manifests) owners.set(child.digest, index);
    return index.rawManifest();
  };
  const hit = await selectPlatform(root, platform ?? 'linux/amd64', load);
  const owner = owners.get(hit.digest);
  if (owner === undefined) throw new LadingError(ErrorCode.NotFound, `${hit.digest} not found`);
  return owner.image(hit.digest);
}

/** Written is where content went: the root descriptor and every location tagged. */
export type Written = { readonly descriptor: Descriptor; readonly locations: readonly string[] };

/** WriteToOptions configure {@link writeTo}. */
export type WriteToOptions = {
  readonly progress: ProgressEmitter;
  readonly signal: AbortSignal;
  /** onAuthorized runs once a registry accepted the first upload session. */
  readonly onAuthorized?: () => void;
};

async function writeOne(
  location: Location,
  content: Image | ImageIndex,
  options: RemoteOptions,
  { progress, signal, onAuthorized }: WriteToOptions,
): Promise<{ descriptor: Descriptor; opened: OpenedTarget }> {
  const opened = openTarget(location, options, 'write');
  const write = async (): Promise<Descriptor> => {
    if (location.kind === 'registry') {
      const handle = writeAny(location.reference, content, { ...options, signal });
      handle.on('progress', (e) => progress.emit('progress', e));
      handle.authorized.then(onAuthorized, () => undefined);
      const result: WriteResult = await handle.done;
      return { mediaType: result.mediaType, digest: result.digest, size: result.size };
    }
    if (opened.ref === undefined)
      throw new LadingError(ErrorCode.InvalidArgument, `${opened.label} needs a tag (…:TAG)`);
    return isImageIndex(content)
      ? await writeImageIndex(opened.target, opened.ref, content, { signal, progress })
      : await writeImage(opened.target, opened.ref, content, { signal, progress });
  };
  return { descriptor: await abandoning([opened], write), opened };
}

/**
 * checkDestinations makes sure, before anything is written, that every
 * destination but the first can take the image, so that a command with
 * several does not tag one and then fail on another: a docker archive's
 * directory must exist, an OCI layout must be one lading can write (or not
 * be there yet), and a registry must accept a push (an upload session is
 * opened and cancelled, as `auth check` does). The first destination needs
 * no check: a failure there writes nothing elsewhere.
 * @throws what the failing check throws
 */
async function checkDestinations(
  texts: readonly string[],
  options: RemoteOptions,
  signal: AbortSignal,
): Promise<void> {
  await Promise.all(
    texts.slice(1).map(async (text) => {
      const location = parseLocation(text);
      switch (location.kind) {
        case 'docker-archive':
          await checkOutputFile(location.file);
          return;
        case 'oci': {
          const st = await stat(location.dir).catch(() => undefined);
          if (st === undefined) return;
          if (!st.isDirectory()) {
            throw fileSystemError(
              Object.assign(new Error('not a directory'), { code: 'ENOTDIR' }),
              location.dir,
              'cannot write the OCI layout',
            );
          }
          // (index() refuses another layout version and a broken index.json)
          await ociLayout(location.dir).index({ signal });
          return;
        }
        case 'registry':
          await checkPushPermission(location.reference, { ...options, signal });
      }
    }),
  );
}

/**
 * writeTo writes `content` to the first location and then points every other
 * location at the same manifest: within one repository that is a manifest
 * PUT only; elsewhere a copy that skips or mounts what is already there.
 */
export async function writeTo(
  texts: readonly string[],
  content: Image | ImageIndex,
  options: RemoteOptions,
  how: WriteToOptions,
): Promise<Written> {
  const { progress, signal } = how;
  // What is written is named by its tag: its digest is not known before.
  for (const text of texts)
    if (namesDigest(parseLocation(text)))
      throw new UsageError(
        `${text} names a digest: a new image is written under a tag`,
        'give HOST/REPO:TAG, oci:DIR:TAG or docker-archive:FILE:NAME:TAG',
      );
  // A docker archive being written cannot be read back before it is
  // closed: write a registry or layout first and copy from it; archives
  // alone are each written in full.
  const readable = texts.findIndex((t) => parseLocation(t).kind !== 'docker-archive');
  const order =
    readable <= 0 ? [...texts] : [texts[readable] ?? '', ...texts.filter((_, i) => i !== readable)];
  const [first, ...rest] = order;
  if (first === undefined) throw new LadingError(ErrorCode.InvalidArgument, 'no destination');
  if (order.length > 1) await checkDestinations(order, options, signal);
  const { descriptor, opened } = await writeOne(parseLocation(first), content, options, how);
  // Every location opened so far: committed at the end, or on a failure
  // abandoned (a docker archive's spooled layers must not stay in /tmp).
  const pending = [opened];
  await abandoning(pending, async () => {
    for (const text of rest) {
      if (readable < 0) {
        pending.push((await writeOne(parseLocation(text), content, options, how)).opened);
        continue;
      }
      const other = openTarget(parseLocation(text), options, 'write');
      pending.push(other);
      await copy(opened.target, descriptor.digest, other.target, other.ref ?? 'latest', {
        signal,
        progress,
      });
    }
    // A target whose finish() fails has cleaned up itself and left `pending`.
    for (let f = pending.shift(); f !== undefined; f = pending.shift()) await f.finish();
  });
  return { descriptor, locations: texts };
}
