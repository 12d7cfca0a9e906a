import type { Readable } from 'node:stream';
import type { BlobWriter, Descriptor, IoOptions, MediaTypeString, Target } from '@lading/core';

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
  /**
   * keepOtherImages (write mode): on close(), the images the existing
   * `file` holds under RepoTags this writer did not tag (and its untagged
   * ones) are written into the new archive too, so that writing one image
   * into an archive of several replaces that one only. Default false: the
   * new archive replaces the file. A file that is not an archive is
   * replaced either way.
   */
  readonly keepOtherImages?: boolean;
}

/** ArchiveImage is one image of an archive: its manifest and its RepoTags. */
export type ArchiveImage = { readonly manifest: Descriptor; readonly repoTags: readonly string[] };

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

/**
 * DockerArchive is a {@link Target} over a `docker save` tarball: a
 * {@link DockerArchiveReader} (mode `'read'`) or a {@link DockerArchiveWriter}
 * (mode `'write'`), as {@link dockerArchive} opens them. Each refuses the
 * other's operations with UNSUPPORTED; `mode` tells which one it is.
 */
export abstract class DockerArchive implements Target, BlobWriter {
  /** file is the archive path. */
  readonly file: string;
  /** mode is `'read'` for a reader, `'write'` for a writer. */
  abstract readonly mode: 'read' | 'write';

  /** The constructor records the archive path; no I/O happens until the first call. */
  constructor(file: string) {
    this.file = file;
  }

  /** images lists the archive's images and their RepoTags (reader only). */
  abstract images(options?: IoOptions): Promise<ArchiveImage[]>;
  /** resolve finds an image manifest by tag (a RepoTag) or digest. @throws NOT_FOUND */
  abstract resolve(ref: string, options?: IoOptions): Promise<Descriptor>;
  /** fetch streams a blob, verified against `desc`. @throws NOT_FOUND */
  abstract fetch(desc: Descriptor, options?: IoOptions): Promise<Readable>;
  /** exists tells whether the blob is there with the descriptor's size. */
  abstract exists(desc: Descriptor, options?: IoOptions): Promise<boolean>;
  /** push stores a blob (writer only). @throws UNSUPPORTED on a reader */
  abstract push(desc: Descriptor, content: Readable, options?: IoOptions): Promise<void>;
  /** pushUnknown stores a blob of unknown digest (writer only). @throws UNSUPPORTED on a reader */
  abstract pushUnknown(
    content: Readable,
    mediaType: MediaTypeString,
    options?: IoOptions,
  ): Promise<Descriptor>;
  /** tag records a RepoTag for a pushed image (writer only). @throws UNSUPPORTED on a reader */
  abstract tag(desc: Descriptor, ref: string, options?: IoOptions): Promise<void>;
  /** close writes the archive (writer) or forgets the scanned index (reader). */
  abstract close(options?: IoOptions): Promise<void>;
  /** discard drops everything pushed without writing the archive. */
  abstract discard(): Promise<void>;
}
