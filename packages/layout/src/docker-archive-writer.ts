import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  ErrorCode,
  HashingStream,
  LadingError,
  VerifyingStream,
  copy,
  createDecompressor,
  fetchVerified,
  digestOf,
  isDigest,
  isImageManifestMediaType,
  isIndexMediaType,
  isLadingError,
  isManifestMediaType,
  layerCompressionOf,
  MAX_MANIFEST_SIZE,
  throwIfAborted,
  type Descriptor,
  type Digest,
  type IoOptions,
  type MediaTypeString,
} from '@lading/core';
import { checkOutputFile, decompressionError, isLayerMediaType } from '@lading/core/internal';
import { DockerArchive, normalizeRepoTag, type ArchiveImage } from './docker-archive.js';
import { DockerArchiveReader } from './docker-archive-reader.js';
import { closed, notFound, wrongMode } from './internal/archive-errors.js';
import {
  planArchive,
  writeArchiveFile,
  type SmallBlob,
  type Spooled,
} from './internal/archive-write.js';

/**
 * DockerArchiveWriter collects pushed content and writes a `docker save`
 * tarball on `close()`. It spools each pushed layer, decompressed, to a
 * temp file (tar headers need sizes up front and a gzip layer's
 * uncompressed size is unknown until it has flowed), keeps configs and
 * manifests in memory, and writes `<diffId-hex>/layer.tar`,
 * `<config-hex>.json`, `manifest.json` and `repositories`, the form every
 * `docker load` accepts, plus the OCI layout docker 25+ adds. Tags become
 * RepoTags (`v1` → `v1:latest`, `docker.io/library/x:1` → `x:1`).
 */
export class DockerArchiveWriter extends DockerArchive {
  /** mode is `'write'`. */
  readonly mode = 'write' as const;
  readonly #tmpRoot: string;
  #spoolDir: Promise<string> | undefined;
  readonly #layers = new Map<Digest, Spooled>();
  readonly #small = new Map<Digest, SmallBlob>();
  readonly #tags = new Map<string, Digest>();
  #closed = false;
  #writable: Promise<void> | undefined;
  readonly #keepOthers: boolean;

  /** tmpDir is where pushed layers are spooled until close(); default os.tmpdir(). */
  constructor(
    file: string,
    options: { readonly tmpDir?: string; readonly keepOtherImages?: boolean } = {},
  ) {
    super(file);
    this.#tmpRoot = options.tmpDir ?? tmpdir();
    this.#keepOthers = options.keepOtherImages === true;
  }

  #assertOpen(): void {
    if (this.#closed) throw closed();
  }

  /** images refuses: a writer lists nothing until its archive is read back. @throws UNSUPPORTED */
  images(_options?: IoOptions): Promise<ArchiveImage[]> {
    return Promise.reject(wrongMode(this.mode));
  }

  /**
   * resolve finds a pushed image manifest by tag (normalized as a RepoTag) or digest.
   * @throws NOT_FOUND
   */
  resolve(ref: string, _options?: IoOptions): Promise<Descriptor> {
    const digest = this.#tags.get(normalizeRepoTag(ref)) ?? (isDigest(ref) ? ref : undefined);
    const small = digest === undefined ? undefined : this.#small.get(digest);
    if (digest === undefined || small === undefined || !isManifestMediaType(small.mediaType)) {
      return Promise.reject(notFound(`reference ${JSON.stringify(ref)}`));
    }
    return Promise.resolve({ mediaType: small.mediaType, digest, size: small.bytes.length });
  }

  /**
   * fetch streams back what was pushed in uncompressed form (configs,
   * manifests, uncompressed layers), verified against `desc`.
   * @throws NOT_FOUND, UNSUPPORTED (a compressed layer: it was stored decompressed)
   */
  fetch(desc: Descriptor, options: IoOptions = {}): Promise<Readable> {
    return new Promise((resolve) => {
      throwIfAborted(options.signal);
      const verifier = new VerifyingStream(desc, desc.mediaType);
      pipeline(this.#source(desc), verifier).catch(() => undefined);
      resolve(verifier);
    });
  }

  #source(desc: Descriptor): Readable {
    const small = this.#small.get(desc.digest);
    if (small !== undefined) return Readable.from([small.bytes], { objectMode: false });
    const layer = this.#layers.get(desc.digest);
    if (layer === undefined) throw notFound(`blob ${desc.digest}`);
    if (layer.diffId === desc.digest) return createReadStream(layer.path);
    throw new LadingError(
      ErrorCode.Unsupported,
      `layer ${desc.digest} was stored gunzipped; it cannot be read back compressed before close()`,
    );
  }

  /** exists tells whether the blob was pushed. */
  exists(desc: Descriptor, options: IoOptions = {}): Promise<boolean> {
    return new Promise((resolve) => {
      throwIfAborted(options.signal);
      resolve(
        this.#small.get(desc.digest)?.bytes.length === desc.size || this.#layers.has(desc.digest),
      );
    });
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
    label: string,
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
      throw decompressionError(err, label);
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
   * verified, decompressed (gzip, zstd) and spooled to a temp file; configs
   * and manifests (≤ 4 MiB) are kept in memory.
   * @throws INVALID_ARGUMENT (after close), UNSUPPORTED (zstd on a Node
   *   without it), DIGEST_MISMATCH, SIZE_MISMATCH
   */
  async push(desc: Descriptor, content: Readable, options: IoOptions = {}): Promise<void> {
    if (this.#closed) {
      content.destroy();
      throw closed();
    }
    if (await this.exists(desc, options)) {
      content.destroy();
      return;
    }
    // The archive is written on close(): a FILE that cannot be written
    // fails the first push, not the close after every blob came.
    this.#writable ??= checkOutputFile(this.file).then(() => undefined);
    try {
      await this.#writable;
    } catch (err) {
      content.destroy();
      throw err;
    }
    const verifier = new VerifyingStream(desc, desc.mediaType);
    if (isLayerMediaType(desc.mediaType)) {
      this.#layers.set(
        desc.digest,
        await this.#spoolLayer(content, desc.mediaType, verifier, options, `layer ${desc.digest}`),
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
    this.#assertOpen();
    const blob = new HashingStream();
    if (isLayerMediaType(mediaType)) {
      const spooled = await this.#spoolLayer(
        content,
        mediaType,
        blob,
        options,
        `a ${mediaType} layer`,
      );
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
    return new Promise((resolve) => {
      throwIfAborted(options.signal);
      this.#assertOpen();
      const small = this.#small.get(desc.digest);
      if (small === undefined) throw notFound(`manifest ${desc.digest}`);
      if (isIndexMediaType(small.mediaType) || !isImageManifestMediaType(small.mediaType)) {
        throw new LadingError(
          ErrorCode.Unsupported,
          `docker archives hold images, not ${small.mediaType}; select a platform`,
        );
      }
      if (!isDigest(ref)) this.#tags.set(normalizeRepoTag(ref), desc.digest);
      resolve();
    });
  }

  /**
   * close writes the archive from everything pushed: every pushed image
   * manifest becomes a manifest.json entry with its tags as RepoTags. It
   * writes a temp file next to `file` and renames it into place, then
   * removes the spool directory.
   * @throws NOT_FOUND (a manifest's config or layer was never pushed),
   *   DIGEST_MISMATCH (a layer's diffId is not the config's)
   */
  async close(options: IoOptions = {}): Promise<void> {
    if (this.#closed) return;
    try {
      if (this.#keepOthers) await this.#keepOtherImages(options);
      const planned = planArchive(this.#small, this.#layers, this.#tags);
      await writeArchiveFile(this.file, planned, options);
    } finally {
      await this.discard();
    }
  }

  /**
   * keepOtherImages copies into this writer the images the archive at
   * `file` holds now under RepoTags this writer does not take (and its
   * untagged images), so that writing an image into an archive of several
   * keeps the rest. A missing file, or one that cannot be read as an
   * archive, keeps nothing: it is replaced, as without the option.
   */
  async #keepOtherImages(options: IoOptions): Promise<void> {
    const st = await stat(this.file).catch(() => undefined);
    if (st?.isFile() !== true || st.size === 0) return;
    const reader = new DockerArchiveReader(this.file);
    try {
      let images: ArchiveImage[];
      try {
        images = await reader.images(options);
      } catch (err) {
        if (isLadingError(err, ErrorCode.Aborted)) throw err;
        return;
      }
      for (const image of images) {
        const tags = image.repoTags.map(normalizeRepoTag).filter((t) => !this.#tags.has(t));
        // (an image whose every tag is taken is the one replaced)
        if (image.repoTags.length > 0 && tags.length === 0) continue;
        // An untagged image whose config this writer holds is the one it
        // writes (its manifest may differ: an archive keeps Docker types).
        if (image.repoTags.length === 0 && this.#small.has(await configOf(reader, image, options)))
          continue;
        const [first, ...more] = tags;
        await copy(reader, image.manifest.digest, this, first, options);
        for (const t of more) await this.tag(image.manifest, t, options);
      }
    } finally {
      await reader.close();
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
}

/** configOf reads the config digest of an archive's image. */
async function configOf(
  reader: DockerArchiveReader,
  image: ArchiveImage,
  options: IoOptions,
): Promise<Digest> {
  const raw = await fetchVerified(reader, image.manifest, options);
  return (JSON.parse(Buffer.from(raw).toString('utf8')) as { config: { digest: Digest } }).config
    .digest;
}
