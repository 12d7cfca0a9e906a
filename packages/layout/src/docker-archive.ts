import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DigestMismatchError,
  ErrorCode,
  HashingStream,
  LadingError,
  LocalPathError,
  fileSystemError,
  MediaType,
  VerifyingStream,
  digestHex,
  digestOf,
  isDigest,
  createDecompressor,
  layerCompressionOf,
  isImageManifestMediaType,
  isIndexMediaType,
  isManifestMediaType,
  MAX_MANIFEST_SIZE,
  successorsOf,
  throwIfAborted,
  type BlobWriter,
  type ConfigFile,
  type Descriptor,
  type Digest,
  type ImageManifest,
  type IndexManifest,
  type IoOptions,
  type MediaTypeString,
  type Target,
} from '@lading/core';
import { tarPadding, tarTrailer } from '@lading/core/internal';
import { indexTar, resolveEntry, tarHeader, type TarEntry } from './internal/tar.js';
import { refNameAnnotation } from './oci-layout.js';
import { onlyImage } from './internal/only.js';

/** The media type of an uncompressed Docker layer (what `docker save` stores). */
export const dockerLayerTar = 'application/vnd.docker.image.rootfs.diff.tar';

/** DockerArchiveOptions configure {@link dockerArchive}. */
export interface DockerArchiveOptions {
  /**
   * mode: `'read'` (default) reads an existing archive; `'write'` collects
   * pushed content and writes a new archive to `file` on `close()`,
   * replacing whatever was there.
   */
  readonly mode?: 'read' | 'write';
  /** tmpDir is where pushed layers are spooled until close() (write mode); default os.tmpdir(). */
  readonly tmpDir?: string;
}

/** ArchiveImage is one image of an archive: its manifest and its RepoTags. */
export type ArchiveImage = { readonly manifest: Descriptor; readonly repoTags: readonly string[] };

type Blob =
  | { readonly mediaType: MediaTypeString; readonly entry: TarEntry }
  | { readonly mediaType: MediaTypeString; readonly bytes: Buffer };

type Loaded = {
  readonly blobs: Map<Digest, Blob>;
  readonly refs: Map<string, Descriptor>;
  readonly images: ArchiveImage[];
};

type Spooled = {
  readonly path: string;
  readonly diffId: Digest;
  readonly size: number;
  readonly mediaType: MediaTypeString;
};

type ManifestJsonItem = {
  Config: string;
  RepoTags: string[] | null;
  Layers: string[];
};

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
}

function notFound(what: string): LadingError {
  return new LadingError(ErrorCode.NotFound, `${what} not found in the docker archive`);
}

function invalid(file: string, why: string, cause?: unknown): LadingError {
  return new LadingError(ErrorCode.InvalidManifest, `${file}: ${why}`, { cause });
}

/**
 * normalizeRepoTag writes a reference the way `docker save` records it:
 * `busybox` → `busybox:latest`, `docker.io/library/busybox:1` → `busybox:1`.
 */
export function normalizeRepoTag(ref: string): string {
  let r = ref;
  if (r.startsWith('docker.io/')) r = r.slice('docker.io/'.length);
  if (r.startsWith('index.docker.io/')) r = r.slice('index.docker.io/'.length);
  if (r.startsWith('library/')) r = r.slice('library/'.length);
  const last = r.slice(r.lastIndexOf('/') + 1);
  if (!last.includes(':') && !r.includes('@')) r = `${r}:latest`;
  return r;
}

/** fullName expands a RepoTag to the fully qualified name containerd records. */
function fullName(repoTag: string): string {
  const first = repoTag.split('/')[0] ?? '';
  const hasHost =
    repoTag.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (hasHost) return repoTag;
  return repoTag.includes('/') ? `docker.io/${repoTag}` : `docker.io/library/${repoTag}`;
}

function isLayerMediaType(mt: string): boolean {
  return mt.includes('.layer.') || mt.includes('.rootfs.');
}

function jsonOf(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw invalid(what, 'not JSON', err);
  }
}

async function readRange(file: string, entry: TarEntry, length: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(Math.min(length, entry.size));
    await fh.read(buf, 0, buf.length, entry.offset);
    return buf;
  } finally {
    await fh.close();
  }
}

function entryStream(file: string, entry: TarEntry, signal?: AbortSignal): Readable {
  if (entry.size === 0) return Readable.from([], { objectMode: false });
  return createReadStream(file, {
    start: entry.offset,
    end: entry.offset + entry.size - 1,
    signal,
  });
}

async function hashEntry(file: string, entry: TarEntry, signal?: AbortSignal): Promise<Digest> {
  const hashing = new HashingStream();
  await pipeline(
    entryStream(file, entry, signal),
    hashing,
    async (source: AsyncIterable<unknown>) => {
      for await (const _ of source) {
        // drain
      }
    },
  );
  if (hashing.digest === undefined) throw new LadingError(ErrorCode.Io, 'hash not computed');
  return hashing.digest;
}

/**
 * DockerArchive is a {@link Target} over a `docker save` tarball.
 *
 * Reading (mode `'read'`) understands the classic layout (`manifest.json`
 * naming `<id>/layer.tar` files and `<hex>.json` configs, symlinks followed)
 * and the docker 25+ one (an OCI layout inside, `manifest.json` pointing into
 * `blobs/sha256/`). The archive must be an uncompressed tar: the first use
 * scans its headers once and remembers each entry's offset; blobs are then
 * streamed straight from those byte ranges and verified. When an OCI manifest
 * in the archive matches an image (docker 25+), it is served as is; otherwise
 * a Docker schema 2 manifest is synthesized whose layers are the uncompressed
 * layer tars (`application/vnd.docker.image.rootfs.diff.tar`, digest = diffId).
 *
 * Writing (mode `'write'`) spools each pushed layer, gunzipped, to a temp
 * file (tar headers need sizes up front and a gzip layer's uncompressed size
 * is unknown until it has flowed), keeps configs and manifests in memory, and
 * writes the archive on `close()`: `<diffId-hex>/layer.tar`, `<config-hex>.json`,
 * `manifest.json` and `repositories`, the form every `docker load` accepts.
 * Tags become RepoTags (`v1` → `v1:latest`, `docker.io/library/x:1` → `x:1`).
 */
export class DockerArchive implements Target, BlobWriter {
  /** file is the archive path. */
  readonly file: string;
  readonly mode: 'read' | 'write';
  readonly #tmpRoot: string;
  #loaded: Promise<Loaded> | undefined;
  #spoolDir: Promise<string> | undefined;
  readonly #layers = new Map<Digest, Spooled>();
  readonly #small = new Map<Digest, { bytes: Buffer; mediaType: MediaTypeString }>();
  readonly #tags = new Map<string, Digest>();
  #closed = false;

  constructor(file: string, options: DockerArchiveOptions = {}) {
    this.file = file;
    this.mode = options.mode ?? 'read';
    this.#tmpRoot = options.tmpDir ?? tmpdir();
  }

  // ---------------------------------------------------------------- reading

  #load(options: IoOptions): Promise<Loaded> {
    this.#loaded ??= this.#scan(options);
    const loaded = this.#loaded;
    loaded.catch(() => {
      if (this.#loaded === loaded) this.#loaded = undefined;
    });
    return loaded;
  }

  async #readEntry(entry: TarEntry, what: string): Promise<Buffer> {
    if (entry.size > MAX_MANIFEST_SIZE) {
      throw new LadingError(
        ErrorCode.ManifestTooLarge,
        `${what} is over ${MAX_MANIFEST_SIZE} bytes`,
      );
    }
    return readRange(this.file, entry, entry.size);
  }

  async #scan(options: IoOptions): Promise<Loaded> {
    let entries: Map<string, TarEntry>;
    try {
      entries = await indexTar(this.file, options);
    } catch (err) {
      if (codeOf(err) === 'ENOENT') {
        throw new LocalPathError(ErrorCode.NotFound, `no such file: ${this.file}`, this.file, {
          cause: err,
        });
      }
      throw fileSystemError(err, this.file);
    }
    const blobs = new Map<Digest, Blob>();
    const refs = new Map<string, Descriptor>();
    const images: ArchiveImage[] = [];
    for (const name of entries.keys()) {
      const m = /^blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(name);
      const digest = m === null ? undefined : `${m[1] ?? ''}:${m[2] ?? ''}`;
      const file = resolveEntry(entries, name);
      if (digest !== undefined && isDigest(digest) && file !== undefined) {
        blobs.set(digest, { mediaType: 'application/octet-stream', entry: file });
      }
    }
    // The OCI layout inside (docker 25+, or any oci-archive).
    const ociImages: { desc: Descriptor; manifest: ImageManifest }[] = [];
    const indexEntry = resolveEntry(entries, 'index.json');
    if (indexEntry !== undefined) {
      const index = jsonOf(await this.#readEntry(indexEntry, 'index.json'), 'index.json') as
        Partial<IndexManifest> | undefined;
      for (const d of Array.isArray(index?.manifests) ? index.manifests : []) {
        const blob = blobs.get(d.digest);
        if (blob === undefined || !('entry' in blob)) continue;
        blobs.set(d.digest, { mediaType: d.mediaType, entry: blob.entry });
        const { [refNameAnnotation]: refName, ['io.containerd.image.name']: fullName } =
          d.annotations ?? {};
        const { annotations: _a, ...plain } = d;
        if (refName !== undefined) refs.set(refName, plain);
        if (fullName !== undefined) refs.set(normalizeRepoTag(fullName), plain);
        if (isImageManifestMediaType(d.mediaType)) {
          const bytes = await this.#readEntry(blob.entry, d.digest);
          const manifest = jsonOf(bytes, d.digest) as ImageManifest;
          ociImages.push({ desc: plain, manifest });
        }
      }
    }
    const manifestJson = resolveEntry(entries, 'manifest.json');
    if (manifestJson === undefined) {
      if (indexEntry === undefined) {
        throw invalid(this.file, 'neither manifest.json nor index.json: not a docker archive');
      }
      for (const { desc } of ociImages) images.push({ manifest: desc, repoTags: [] });
      return { blobs, refs, images };
    }
    const items = jsonOf(await this.#readEntry(manifestJson, 'manifest.json'), 'manifest.json');
    if (!Array.isArray(items)) throw invalid(this.file, 'manifest.json is not an array');
    for (const [i, raw] of (items as Partial<ManifestJsonItem>[]).entries()) {
      const item = raw;
      if (typeof item.Config !== 'string' || !Array.isArray(item.Layers)) {
        throw invalid(this.file, `manifest.json[${i}] lacks Config or Layers`);
      }
      const configEntry = resolveEntry(entries, item.Config);
      if (configEntry === undefined) throw invalid(this.file, `missing config ${item.Config}`);
      const configBytes = await this.#readEntry(configEntry, item.Config);
      const configDigest = digestOf(configBytes);
      const config = jsonOf(configBytes, item.Config) as Partial<ConfigFile>;
      let desc = ociImages.find((o) => o.manifest.config.digest === configDigest)?.desc;
      if (desc === undefined) {
        const diffIds = config.rootfs?.diff_ids ?? [];
        const layers: Descriptor[] = [];
        for (const [j, path] of item.Layers.entries()) {
          const entry = resolveEntry(entries, path);
          if (entry === undefined) throw invalid(this.file, `missing layer ${path}`);
          const fromPath = /(?:^|\/)blobs\/sha256\/([a-f0-9]{64})$/.exec(entry.name)?.[1];
          const head = await readRange(this.file, entry, 2);
          const gzip = head[0] === 0x1f && head[1] === 0x8b;
          // Synthesized manifests use OCI media types (as skopeo does when
          // it converts an archive): OCI layouts, umoci and oci-image-tool
          // read them, and registries take them.
          const mediaType = gzip ? MediaType.OciLayerGzip : MediaType.OciLayer;
          const known = fromPath === undefined ? undefined : (`sha256:${fromPath}` as Digest);
          const digest =
            known ??
            (gzip ? undefined : diffIds[j]) ??
            (await hashEntry(this.file, entry, options.signal));
          blobs.set(digest, { mediaType, entry });
          layers.push({ mediaType, digest, size: entry.size });
        }
        const manifest: ImageManifest = {
          schemaVersion: 2,
          mediaType: MediaType.OciManifest,
          config: {
            mediaType: MediaType.OciConfig,
            digest: configDigest,
            size: configBytes.length,
          },
          layers,
        };
        const bytes = Buffer.from(JSON.stringify(manifest));
        desc = { mediaType: MediaType.OciManifest, digest: digestOf(bytes), size: bytes.length };
        blobs.set(desc.digest, { mediaType: MediaType.OciManifest, bytes });
        blobs.set(configDigest, { mediaType: MediaType.OciConfig, bytes: configBytes });
      }
      const repoTags = item.RepoTags ?? [];
      for (const tag of repoTags) refs.set(normalizeRepoTag(tag), desc);
      images.push({ manifest: desc, repoTags });
    }
    return { blobs, refs, images };
  }

  /** images lists the archive's images and their RepoTags (read mode). */
  async images(options: IoOptions = {}): Promise<ArchiveImage[]> {
    this.#assertMode('read');
    return [...(await this.#load(options)).images];
  }

  /**
   * resolve finds an image by RepoTag (`busybox:1`, `docker.io/library/busybox:1`,
   * `busybox` for `:latest`), by OCI ref name, or by manifest digest; `''`
   * picks the only image of a single-image archive.
   * @throws NOT_FOUND
   */
  async resolve(ref: string, options: IoOptions = {}): Promise<Descriptor> {
    if (this.mode === 'write') {
      const digest = this.#tags.get(normalizeRepoTag(ref)) ?? (isDigest(ref) ? ref : undefined);
      const small = digest === undefined ? undefined : this.#small.get(digest);
      if (digest === undefined || small === undefined || !isManifestMediaType(small.mediaType)) {
        throw notFound(`reference ${JSON.stringify(ref)}`);
      }
      return { mediaType: small.mediaType, digest, size: small.bytes.length };
    }
    const loaded = await this.#load(options);
    if (ref === '') {
      const tags = new Map(loaded.images.map((i) => [i.manifest.digest, i.repoTags]));
      const one = onlyImage(
        loaded.images.map((i) => i.manifest),
        `the docker archive ${this.file}`,
        this.file,
        (d) => tags.get(d.digest) ?? [],
      );
      return { ...one };
    }
    const hit = loaded.refs.get(ref) ?? loaded.refs.get(normalizeRepoTag(ref));
    if (hit !== undefined) return { ...hit };
    if (isDigest(ref)) {
      const blob = loaded.blobs.get(ref);
      const image = loaded.images.find((i) => i.manifest.digest === ref);
      if (image !== undefined) return { ...image.manifest };
      if (blob !== undefined && 'bytes' in blob && isManifestMediaType(blob.mediaType)) {
        return { mediaType: blob.mediaType, digest: ref, size: blob.bytes.length };
      }
    }
    throw notFound(`reference ${JSON.stringify(ref)}`);
  }

  /**
   * fetch streams a blob, verified against `desc`. In write mode only what
   * was pushed in uncompressed form (configs, manifests, uncompressed
   * layers) can be read back.
   * @throws NOT_FOUND, UNSUPPORTED (a gzip layer pushed in write mode)
   */
  async fetch(desc: Descriptor, options: IoOptions = {}): Promise<Readable> {
    throwIfAborted(options.signal);
    let source: Readable;
    if (this.mode === 'write') {
      const small = this.#small.get(desc.digest);
      const layer = this.#layers.get(desc.digest);
      if (small !== undefined) source = Readable.from([small.bytes], { objectMode: false });
      else if (layer?.diffId === desc.digest) source = createReadStream(layer.path);
      else if (layer !== undefined) {
        throw new LadingError(
          ErrorCode.Unsupported,
          `layer ${desc.digest} was stored gunzipped; it cannot be read back compressed before close()`,
        );
      } else throw notFound(`blob ${desc.digest}`);
    } else {
      const blob = (await this.#load(options)).blobs.get(desc.digest);
      if (blob === undefined) throw notFound(`blob ${desc.digest}`);
      source =
        'bytes' in blob
          ? Readable.from([blob.bytes], { objectMode: false })
          : entryStream(this.file, blob.entry, options.signal);
    }
    const verifier = new VerifyingStream(desc, desc.mediaType);
    pipeline(source, verifier).catch(() => undefined);
    return verifier;
  }

  /** exists tells whether the blob is in the archive (read) or was pushed (write). */
  async exists(desc: Descriptor, options: IoOptions = {}): Promise<boolean> {
    throwIfAborted(options.signal);
    if (this.mode === 'write') {
      return (
        this.#small.get(desc.digest)?.bytes.length === desc.size || this.#layers.has(desc.digest)
      );
    }
    const blob = (await this.#load(options)).blobs.get(desc.digest);
    if (blob === undefined) return false;
    return ('bytes' in blob ? blob.bytes.length : blob.entry.size) === desc.size;
  }

  // ---------------------------------------------------------------- writing

  #assertMode(mode: 'read' | 'write'): void {
    if (this.mode !== mode) {
      throw new LadingError(
        ErrorCode.Unsupported,
        `this docker archive target was opened in ${this.mode} mode`,
      );
    }
    if (this.#closed) throw new LadingError(ErrorCode.InvalidArgument, 'the archive is closed');
  }

  #spool(): Promise<string> {
    this.#spoolDir ??= mkdtemp(join(this.#tmpRoot, 'lading-archive-'));
    return this.#spoolDir;
  }

  async #spoolLayer(
    content: Readable,
    mediaType: MediaTypeString,
    front: Transform,
    options: IoOptions,
  ): Promise<Spooled> {
    const path = join(await this.#spool(), `${randomUUID()}.tar`);
    const diff = new HashingStream();
    const stages: (Readable | Transform)[] = [content, front];
    // Docker archives hold plain tars: gzip and zstd layers are decompressed.
    const kind = layerCompressionOf(mediaType);
    if (kind !== 'none') stages.push(createDecompressor(kind));
    stages.push(diff);
    try {
      await pipeline([...stages, createWriteStream(path, { flags: 'wx' })], {
        signal: options.signal,
      });
    } catch (err) {
      await rm(path, { force: true });
      throw err;
    }
    if (diff.digest === undefined) throw new LadingError(ErrorCode.Io, 'hash not computed');
    return { path, diffId: diff.digest, size: diff.size, mediaType };
  }

  async #readSmall(content: Readable, front: Transform, options: IoOptions): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    await pipeline(
      content,
      front,
      async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) {
          size += chunk.length;
          if (size > MAX_MANIFEST_SIZE) {
            throw new LadingError(
              ErrorCode.ManifestTooLarge,
              `non-layer blobs are kept in memory and capped at ${MAX_MANIFEST_SIZE} bytes`,
            );
          }
          chunks.push(chunk);
        }
      },
      { signal: options.signal },
    );
    return Buffer.concat(chunks);
  }

  /**
   * push stores a blob for the archive written on close(): layers are
   * verified, decompressed (gzip, zstd) and spooled to a temp file; configs and manifests
   * (≤ 4 MiB) are kept in memory.
   * @throws UNSUPPORTED (read mode; zstd on a Node without it), DIGEST_MISMATCH, SIZE_MISMATCH
   */
  async push(desc: Descriptor, content: Readable, options: IoOptions = {}): Promise<void> {
    try {
      this.#assertMode('write');
    } catch (err) {
      content.destroy();
      throw err;
    }
    if (await this.exists(desc, options)) {
      content.destroy();
      return;
    }
    const verifier = new VerifyingStream(desc, desc.mediaType);
    if (isLayerMediaType(desc.mediaType)) {
      this.#layers.set(
        desc.digest,
        await this.#spoolLayer(content, desc.mediaType, verifier, options),
      );
    } else {
      const bytes = await this.#readSmall(content, verifier, options);
      this.#small.set(desc.digest, { bytes, mediaType: desc.mediaType });
    }
  }

  /** pushUnknown stores a blob of unknown digest (a stream layer), hashing it on the way. */
  async pushUnknown(
    content: Readable,
    mediaType: MediaTypeString,
    options: IoOptions = {},
  ): Promise<Descriptor> {
    this.#assertMode('write');
    const blob = new HashingStream();
    if (isLayerMediaType(mediaType)) {
      const spooled = await this.#spoolLayer(content, mediaType, blob, options);
      if (blob.digest === undefined) throw new LadingError(ErrorCode.Io, 'hash not computed');
      this.#layers.set(blob.digest, spooled);
      return { mediaType, digest: blob.digest, size: blob.size };
    }
    const bytes = await this.#readSmall(content, blob, options);
    const digest = digestOf(bytes);
    this.#small.set(digest, { bytes, mediaType });
    return { mediaType, digest, size: bytes.length };
  }

  /**
   * tag records a RepoTag for a pushed image manifest (normalized the way
   * docker writes it); a tag already used moves to this image.
   * @throws NOT_FOUND (manifest not pushed), UNSUPPORTED (an index: docker
   *   archives hold images; copy one platform)
   */
  tag(desc: Descriptor, ref: string, options: IoOptions = {}): Promise<void> {
    try {
      this.#tag(desc, ref, options);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #tag(desc: Descriptor, ref: string, options: IoOptions): void {
    throwIfAborted(options.signal);
    this.#assertMode('write');
    const small = this.#small.get(desc.digest);
    if (small === undefined) throw notFound(`manifest ${desc.digest}`);
    if (isIndexMediaType(small.mediaType) || !isImageManifestMediaType(small.mediaType)) {
      throw new LadingError(
        ErrorCode.Unsupported,
        `docker archives hold images, not ${small.mediaType}; select a platform`,
      );
    }
    if (!isDigest(ref)) this.#tags.set(normalizeRepoTag(ref), desc.digest);
  }

  /**
   * close writes the archive (write mode) from everything pushed: every
   * pushed image manifest becomes a manifest.json entry with its tags as
   * RepoTags. It writes a temp file next to `file` and renames it into
   * place, then removes the spool directory. In read mode it just forgets
   * the scanned index.
   * @throws NOT_FOUND (a manifest's config or layer was never pushed),
   *   DIGEST_MISMATCH (a layer's diffId is not the config's)
   */
  async close(options: IoOptions = {}): Promise<void> {
    if (this.#closed) return;
    if (this.mode === 'read') {
      this.#loaded = undefined;
      this.#closed = true;
      return;
    }
    try {
      await this.#writeArchive(options);
    } finally {
      await this.discard();
    }
  }

  /** discard drops everything pushed without writing the archive. */
  async discard(): Promise<void> {
    this.#closed = true;
    const dir = this.#spoolDir;
    this.#spoolDir = undefined;
    if (dir !== undefined) await rm(await dir, { recursive: true, force: true });
    this.#layers.clear();
    this.#small.clear();
  }

  async #writeArchive(options: IoOptions): Promise<void> {
    type Planned = { configName: string; config: Buffer; layers: Spooled[]; tags: string[] };
    const planned: Planned[] = [];
    const tagsOf = new Map<Digest, string[]>();
    for (const [tag, digest] of this.#tags)
      tagsOf.set(digest, [...(tagsOf.get(digest) ?? []), tag]);
    for (const [digest, small] of this.#small) {
      if (!isImageManifestMediaType(small.mediaType)) continue;
      const desc: Descriptor = { mediaType: small.mediaType, digest, size: small.bytes.length };
      const [configDesc, ...layerDescs] = successorsOf(small.bytes, desc);
      if (configDesc === undefined) continue;
      const config = this.#small.get(configDesc.digest);
      if (config === undefined) throw notFound(`config ${configDesc.digest} of ${digest}`);
      const configFile = jsonOf(config.bytes, configDesc.digest) as Partial<ConfigFile>;
      const diffIds = configFile.rootfs?.diff_ids ?? [];
      const layers = layerDescs.map((l, i) => {
        const spooled = this.#layers.get(l.digest);
        if (spooled === undefined) throw notFound(`layer ${l.digest} of ${digest}`);
        const want = diffIds[i];
        if (want !== spooled.diffId) {
          throw new DigestMismatchError(want ?? '(none)', spooled.diffId, `diffId of layer ${i}`);
        }
        return spooled;
      });
      planned.push({
        configName: `${digestHex(configDesc.digest)}.json`,
        config: config.bytes,
        layers,
        tags: tagsOf.get(digest) ?? [],
      });
    }
    const file = this.file;
    const tmp = join(dirname(file), `.${basename(file)}.${randomUUID()}.tmp`);
    async function* archive(): AsyncGenerator<Buffer> {
      const written = new Set<string>();
      for (const image of planned) {
        for (const layer of image.layers) {
          const hex = digestHex(layer.diffId);
          if (written.has(hex)) continue;
          written.add(hex);
          const { size } = await stat(layer.path);
          if (size !== layer.size)
            throw new LadingError(ErrorCode.Io, `spooled layer ${hex} changed`);
          yield tarHeader(`${hex}/`, 0, 'directory');
          yield tarHeader(`${hex}/layer.tar`, size);
          for await (const chunk of createReadStream(layer.path, { signal: options.signal })) {
            yield chunk as Buffer;
          }
          yield Buffer.alloc(tarPadding(size));
        }
        if (!written.has(image.configName)) {
          written.add(image.configName);
          yield tarHeader(image.configName, image.config.length);
          yield image.config;
          yield Buffer.alloc(tarPadding(image.config.length));
        }
      }
      const manifest = Buffer.from(
        JSON.stringify(
          planned.map((p) => ({
            Config: p.configName,
            RepoTags: p.tags,
            Layers: p.layers.map((l) => `${digestHex(l.diffId)}/layer.tar`),
          })),
        ),
      );
      yield tarHeader('manifest.json', manifest.length);
      yield manifest;
      yield Buffer.alloc(tarPadding(manifest.length));
      // The OCI layout parts docker 25+ adds, without a second copy of the
      // data: blobs/ entries are hardlinks to the layer.tar and config files.
      yield tarHeader('blobs/', 0, 'directory');
      yield tarHeader('blobs/sha256/', 0, 'directory');
      const index: IndexManifest = {
        schemaVersion: 2,
        mediaType: MediaType.OciIndex,
        manifests: [],
      };
      const linked = new Set<string>();
      for (const p of planned) {
        const configHex = p.configName.slice(0, -'.json'.length);
        for (const [hex, target] of [
          [configHex, p.configName],
          ...p.layers.map((l) => [digestHex(l.diffId), `${digestHex(l.diffId)}/layer.tar`]),
        ] as const) {
          if (linked.has(hex)) continue;
          linked.add(hex);
          yield tarHeader(`blobs/sha256/${hex}`, 0, 'hardlink', target);
        }
        const oci: ImageManifest = {
          schemaVersion: 2,
          mediaType: MediaType.OciManifest,
          config: {
            mediaType: MediaType.OciConfig,
            digest: `sha256:${configHex}`,
            size: p.config.length,
          },
          layers: p.layers.map((l) => ({
            mediaType: MediaType.OciLayer,
            digest: l.diffId,
            size: l.size,
          })),
        };
        const bytes = Buffer.from(JSON.stringify(oci));
        const digest = digestOf(bytes);
        if (!linked.has(digestHex(digest))) {
          linked.add(digestHex(digest));
          yield tarHeader(`blobs/sha256/${digestHex(digest)}`, bytes.length);
          yield bytes;
          yield Buffer.alloc(tarPadding(bytes.length));
        }
        const desc: Descriptor = { mediaType: MediaType.OciManifest, digest, size: bytes.length };
        if (p.tags.length === 0) index.manifests.push(desc);
        for (const t of p.tags) {
          index.manifests.push({
            ...desc,
            annotations: {
              'io.containerd.image.name': fullName(t),
              [refNameAnnotation]: t.slice(t.lastIndexOf(':') + 1),
            },
          });
        }
      }
      const layoutBytes = Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' }));
      yield tarHeader('oci-layout', layoutBytes.length);
      yield layoutBytes;
      yield Buffer.alloc(tarPadding(layoutBytes.length));
      const indexBytes = Buffer.from(JSON.stringify(index));
      yield tarHeader('index.json', indexBytes.length);
      yield indexBytes;
      yield Buffer.alloc(tarPadding(indexBytes.length));
      const repositories: Record<string, Record<string, string>> = {};
      for (const p of planned) {
        const top = p.layers.at(-1);
        if (top === undefined) continue;
        for (const t of p.tags) {
          const colon = t.lastIndexOf(':');
          const repo = t.slice(0, colon);
          repositories[repo] = {
            ...repositories[repo],
            [t.slice(colon + 1)]: digestHex(top.diffId),
          };
        }
      }
      const repos = Buffer.from(JSON.stringify(repositories));
      yield tarHeader('repositories', repos.length);
      yield repos;
      yield Buffer.alloc(tarPadding(repos.length));
      yield tarTrailer;
    }
    try {
      await pipeline(Readable.from(archive()), createWriteStream(tmp, { flags: 'wx' }), {
        signal: options.signal,
      });
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
}

/**
 * dockerArchive opens a `docker save` tarball as a target: `{ mode: 'read' }`
 * (default) to read one, `{ mode: 'write' }` to write one on `close()`. No
 * I/O happens until the first call.
 */
export function dockerArchive(file: string, options: DockerArchiveOptions = {}): DockerArchive {
  return new DockerArchive(file, options);
}
