import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  VerifyingStream,
  isDigest,
  isManifestMediaType,
  throwIfAborted,
  type Descriptor,
  type IoOptions,
  type MediaTypeString,
} from '@lading/core';
import { DockerArchive, normalizeRepoTag, type ArchiveImage } from './docker-archive.js';
import { closed, notFound, wrongMode } from './internal/archive-errors.js';
import { entryStream, scanArchive, type ScannedArchive } from './internal/archive-scan.js';
import { onlyImage } from './internal/only.js';

/**
 * DockerArchiveReader reads a `docker save` tarball: the classic layout
 * (`manifest.json` naming `<id>/layer.tar` files and `<hex>.json` configs,
 * symlinks followed) and the docker 25+ one (an OCI layout inside,
 * `manifest.json` pointing into `blobs/sha256/`). The archive must be an
 * uncompressed tar: the first use scans its headers once and remembers each
 * entry's offset; blobs are then streamed straight from those byte ranges
 * and verified. When an OCI manifest in the archive matches an image
 * (docker 25+), it is served as is; otherwise an OCI manifest is
 * synthesized over the archive's layer tars (digest = diffId for a plain
 * tar). Writes fail with UNSUPPORTED.
 */
export class DockerArchiveReader extends DockerArchive {
  /** mode is `'read'`. */
  readonly mode = 'read' as const;
  #scanned: Promise<ScannedArchive> | undefined;
  #closed = false;

  #scan(options: IoOptions): Promise<ScannedArchive> {
    this.#scanned ??= scanArchive(this.file, options);
    const scanned = this.#scanned;
    scanned.catch(() => {
      if (this.#scanned === scanned) this.#scanned = undefined;
    });
    return scanned;
  }

  /** images lists the archive's images and their RepoTags. @throws INVALID_ARGUMENT after close() */
  async images(options: IoOptions = {}): Promise<ArchiveImage[]> {
    if (this.#closed) throw closed();
    return [...(await this.#scan(options)).images];
  }

  /**
   * resolve finds an image by RepoTag (`busybox:1`, `docker.io/library/busybox:1`,
   * `busybox` for `:latest`), by OCI ref name, or by manifest digest; `''`
   * picks the only image of a single-image archive.
   * @throws NOT_FOUND
   */
  async resolve(ref: string, options: IoOptions = {}): Promise<Descriptor> {
    const scanned = await this.#scan(options);
    if (ref === '') {
      const tags = new Map(scanned.images.map((i) => [i.manifest.digest, i.repoTags]));
      const one = onlyImage(
        scanned.images.map((i) => i.manifest),
        `the docker archive ${this.file}`,
        this.file,
        (d) => tags.get(d.digest) ?? [],
      );
      return { ...one };
    }
    const hit = scanned.refs.get(ref) ?? scanned.refs.get(normalizeRepoTag(ref));
    if (hit !== undefined) return { ...hit };
    if (isDigest(ref)) {
      const blob = scanned.blobs.get(ref);
      const image = scanned.images.find((i) => i.manifest.digest === ref);
      if (image !== undefined) return { ...image.manifest };
      if (blob !== undefined && 'bytes' in blob && isManifestMediaType(blob.mediaType)) {
        return { mediaType: blob.mediaType, digest: ref, size: blob.bytes.length };
      }
    }
    throw notFound(`reference ${JSON.stringify(ref)}`);
  }

  /** fetch streams a blob from its byte range, verified against `desc`. @throws NOT_FOUND */
  async fetch(desc: Descriptor, options: IoOptions = {}): Promise<Readable> {
    throwIfAborted(options.signal);
    const blob = (await this.#scan(options)).blobs.get(desc.digest);
    if (blob === undefined) throw notFound(`blob ${desc.digest}`);
    const source =
      'bytes' in blob
        ? Readable.from([blob.bytes], { objectMode: false })
        : entryStream(this.file, blob.entry, options.signal);
    const verifier = new VerifyingStream(desc, desc.mediaType);
    pipeline(source, verifier).catch(() => undefined);
    return verifier;
  }

  /** exists tells whether the blob is in the archive with the descriptor's size. */
  async exists(desc: Descriptor, options: IoOptions = {}): Promise<boolean> {
    throwIfAborted(options.signal);
    const blob = (await this.#scan(options)).blobs.get(desc.digest);
    if (blob === undefined) return false;
    return ('bytes' in blob ? blob.bytes.length : blob.entry.size) === desc.size;
  }

  /** push refuses: a reader does not write. @throws UNSUPPORTED */
  push(_desc: Descriptor, content: Readable, _options?: IoOptions): Promise<void> {
    content.destroy();
    return Promise.reject(wrongMode(this.mode));
  }

  /** pushUnknown refuses: a reader does not write. @throws UNSUPPORTED */
  pushUnknown(
    content: Readable,
    _mediaType?: MediaTypeString,
    _options?: IoOptions,
  ): Promise<Descriptor> {
    content.destroy();
    return Promise.reject(wrongMode(this.mode));
  }

  /** tag refuses: a reader does not write. @throws UNSUPPORTED */
  tag(_desc: Descriptor, _ref: string, options: IoOptions = {}): Promise<void> {
    return new Promise(() => {
      throwIfAborted(options.signal);
      throw wrongMode(this.mode);
    });
  }

  /** close forgets the scanned index. */
  close(): Promise<void> {
    this.#scanned = undefined;
    this.#closed = true;
    return Promise.resolve();
  }

  /** discard is close(): a reader holds nothing to drop. */
  discard(): Promise<void> {
    return this.close();
  }
}
