import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  ErrorCode,
  HashingStream,
  LadingError,
  LocalPathError,
  MediaType,
  fileSystemError,
  VerifyingStream,
  digestAlgorithm,
  isDigest,
  isLadingError,
  isIndexMediaType,
  isManifestMediaType,
  MAX_MANIFEST_SIZE,
  successorsOf,
  throwIfAborted,
  type BlobSink,
  type BlobWriter,
  type Descriptor,
  type Digest,
  type IndexManifest,
  type IoOptions,
  type MediaTypeString,
  type SinkOpener,
  type Target,
} from '@lading/core';
import { isReferrersTag, isVerified, makeDirectory } from '@lading/core/internal';
import { withFileLock } from './internal/lock.js';
import { onlyImage } from './internal/only.js';
import { blobParts, codeOf, readSmall } from './internal/layout-files.js';
import { sweep } from './internal/layout-gc.js';
import { checkLayoutShape, openRegularFile } from './internal/regular-file.js';

/** The annotation that names a tag in an OCI layout's index.json. */
export const refNameAnnotation = 'org.opencontainers.image.ref.name';

/** Blob writes gather up to 1 MiB (fs.WriteStream writes what queued up with one writev). */
const writeHighWaterMark = 1024 * 1024;

/** The largest index.json read (a layout with very many tags). */
const maxIndexBytes = 64 * 1024 * 1024;

/** OciLayoutOptions configure {@link ociLayout}. */
export interface OciLayoutOptions {
  /** lockTimeoutMs bounds the wait for `index.json.lock`; default 30 s. */
  readonly lockTimeoutMs?: number;
  /** staleLockMs is the age after which a lock left by a dead process is broken; default 15 s. */
  readonly staleLockMs?: number;
}

/**
 * isReferrersIndex says whether an index.json entry is the referrers tag
 * schema's index of a subject: an image index named `<alg>-<hex>`.
 */
function isReferrersIndex(d: Descriptor): boolean {
  const name = d.annotations?.[refNameAnnotation];
  return name !== undefined && isReferrersTag(name) && isIndexMediaType(d.mediaType);
}

/** GcResult reports what {@link OciLayout.gc} removed. */
export type GcResult = { readonly removed: Digest[]; readonly bytes: number };

// Carries the layout's path, so that a CLI hints at the path, not at a registry.
function notFound(what: string, dir: string, cause?: unknown): LadingError {
  return new LocalPathError(ErrorCode.NotFound, `${what} not found in the OCI layout`, dir, {
    cause,
  });
}

function withoutRefName(d: Descriptor): Descriptor {
  const out: Descriptor = { ...d };
  if (d.annotations !== undefined) {
    const { [refNameAnnotation]: _name, ...rest } = d.annotations;
    if (Object.keys(rest).length > 0) out.annotations = rest;
    else delete out.annotations;
  }
  return out;
}

function emptyIndex(): IndexManifest {
  return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
}

/**
 * OciLayout is a {@link Target} over an OCI image-layout directory: blobs in
 * `blobs/<alg>/<hex>`, tags as `org.opencontainers.image.ref.name`
 * annotations in `index.json`. Blobs are written to a temp file in the layout
 * directory, verified, then renamed into place; `index.json` is rewritten
 * atomically (temp + rename) under an `index.json.lock` file, so several
 * processes may write one layout at once.
 * @see https://github.com/opencontainers/image-spec/blob/main/image-layout.md
 */
export class OciLayout implements Target, BlobWriter, SinkOpener {
  /** dir is the layout directory. */
  readonly dir: string;
  readonly #options: OciLayoutOptions;
  #ready: Promise<void> | undefined;
  #version: Promise<void> | undefined;

  constructor(dir: string, options: OciLayoutOptions = {}) {
    this.dir = dir;
    this.#options = options;
  }

  #blobPath(digest: Digest): string {
    return join(this.dir, ...blobParts(digest));
  }

  /**
   * checkVersion reads `oci-layout` once per instance: a layout whose
   * `imageLayoutVersion` is not 1.x is refused (UNSUPPORTED), as skopeo and
   * umoci refuse it, rather than read or written as if it were 1.0. A
   * missing `oci-layout` is let pass: a layout without one is still read.
   */
  #checkVersion(): Promise<void> {
    this.#version ??= (async () => {
      const path = join(this.dir, 'oci-layout');
      let bytes: Buffer;
      try {
        bytes = await readSmall(this.dir, ['oci-layout'], 64 * 1024);
      } catch (err) {
        if (codeOf(err) === 'ENOENT' || codeOf(err) === 'ENOTDIR') return;
        if (isLadingError(err)) throw err;
        throw fileSystemError(err, path);
      }
      let version: unknown;
      try {
        version = (JSON.parse(bytes.toString('utf8')) as { imageLayoutVersion?: unknown } | null)
          ?.imageLayoutVersion;
      } catch {
        version = undefined;
      }
      if (typeof version !== 'string' || !/^1\.\d+\.\d+$/.test(version)) {
        throw new LocalPathError(
          ErrorCode.Unsupported,
          `${path}: imageLayoutVersion ${version === undefined ? 'missing' : JSON.stringify(version)} is not an OCI image layout 1.x`,
          this.dir,
        );
      }
    })();
    const checked = this.#version;
    checked.catch(() => {
      if (this.#version === checked) this.#version = undefined;
    });
    return checked;
  }

  /** init creates the layout (directory, `oci-layout`, empty `index.json`) if missing. */
  init(): Promise<void> {
    this.#ready ??= this.#init().catch((err: unknown) => {
      // the path the system names (the missing parent, say), else DIR
      const path = (err as { path?: unknown } | null)?.path;
      throw fileSystemError(
        err,
        typeof path === 'string' ? path : this.dir,
        'cannot write the OCI layout',
      );
    });
    const ready = this.#ready;
    ready.catch(() => {
      if (this.#ready === ready) this.#ready = undefined;
    });
    return ready;
  }

  async #init(): Promise<void> {
    await makeDirectory(join(this.dir, 'blobs', 'sha256'));
    await writeFile(join(this.dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }), {
      flag: 'wx',
    }).catch((err: unknown) => {
      if (codeOf(err) !== 'EEXIST') throw err;
    });
    await writeFile(join(this.dir, 'index.json'), JSON.stringify(emptyIndex()), {
      flag: 'wx',
    }).catch((err: unknown) => {
      if (codeOf(err) !== 'EEXIST') throw err;
    });
    await checkLayoutShape(this.dir, ['sha256']);
    await this.#checkVersion();
  }

  /**
   * index reads `index.json` (an empty index when the layout does not exist yet).
   * @throws INVALID_MANIFEST when it is not an image index
   */
  async index(options: IoOptions = {}): Promise<IndexManifest> {
    throwIfAborted(options.signal);
    let bytes: Buffer;
    try {
      bytes = await readSmall(this.dir, ['index.json'], maxIndexBytes);
    } catch (err) {
      // none there, or DIR is not a directory: no layout (yet)
      if (codeOf(err) === 'ENOENT' || codeOf(err) === 'ENOTDIR') return emptyIndex();
      throw fileSystemError(err, join(this.dir, 'index.json'));
    }
    await this.#checkVersion();
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw new LadingError(ErrorCode.InvalidManifest, `${this.dir}/index.json is not JSON`, {
        cause: err,
      });
    }
    const index = parsed as Partial<IndexManifest> | null;
    if (index === null || typeof index !== 'object' || !Array.isArray(index.manifests)) {
      throw new LadingError(ErrorCode.InvalidManifest, `${this.dir}/index.json is not an index`);
    }
    // Validate every entry the way manifests are validated (the digest is
    // only a placeholder: errors name the file).
    successorsOf(
      bytes,
      {
        mediaType: MediaType.OciIndex,
        digest: 'sha256:0000000000000000000000000000000000000000000000000000000000000000',
        size: bytes.length,
      },
      `${this.dir}/index.json`,
    );
    return index as IndexManifest;
  }

  /** list returns the descriptors of `index.json`, tags included as annotations. */
  async list(options: IoOptions = {}): Promise<Descriptor[]> {
    return (await this.index(options)).manifests;
  }

  /** tags lists the `org.opencontainers.image.ref.name` values, sorted. */
  async tags(options: IoOptions = {}): Promise<string[]> {
    const names = (await this.list(options))
      .map((d) => d.annotations?.[refNameAnnotation])
      .filter((n): n is string => n !== undefined);
    return [...new Set(names)].sort();
  }

  /** mustExist fails when there is no layout at all (no `index.json`). */
  async #mustExist(): Promise<void> {
    try {
      await stat(join(this.dir, 'index.json'));
    } catch (err) {
      if (codeOf(err) !== 'ENOENT' && codeOf(err) !== 'ENOTDIR')
        throw fileSystemError(err, this.dir);
      throw new LocalPathError(
        ErrorCode.NotFound,
        `no OCI layout at ${this.dir} (no index.json)`,
        this.dir,
        { cause: err },
      );
    }
  }

  /**
   * resolve finds a tag in `index.json` (the last entry carrying it), or a
   * digest (listed in index.json, or any stored manifest blob); `''` picks
   * the only manifest of a layout that holds one.
   * @throws NOT_FOUND (no layout at `dir`, an unknown reference, or `''` in
   *   a layout with several manifests: the message lists their names)
   */
  async resolve(ref: string, options: IoOptions = {}): Promise<Descriptor> {
    const manifests = await this.list(options);
    if (manifests.length === 0) await this.#mustExist();
    if (ref === '') {
      // The referrers tag schema's indexes (`sha256-<hex>`, written by
      // attach and cp -r) are not images of the layout.
      const images = manifests.filter((d) => !isReferrersIndex(d));
      const one = onlyImage(
        images.length > 0 ? images : manifests,
        `the OCI layout ${this.dir}`,
        this.dir,
        (d) => {
          const n = d.annotations?.[refNameAnnotation];
          return n === undefined ? [] : [n];
        },
      );
      return withoutRefName(one);
    }
    const hit = isDigest(ref)
      ? manifests.find((d) => d.digest === ref)
      : manifests.findLast((d) => d.annotations?.[refNameAnnotation] === ref);
    if (hit !== undefined) return withoutRefName(hit);
    if (isDigest(ref)) {
      let bytes: Buffer;
      try {
        bytes = await readSmall(this.dir, blobParts(ref), MAX_MANIFEST_SIZE);
      } catch (err) {
        if (isLadingError(err, ErrorCode.UnsafePath)) throw err;
        throw notFound(`reference ${ref}`, this.dir, err);
      }
      let mediaType: unknown;
      try {
        mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }).mediaType;
      } catch {
        mediaType = undefined;
      }
      if (typeof mediaType === 'string' && isManifestMediaType(mediaType)) {
        return { mediaType, digest: ref, size: bytes.length };
      }
    }
    throw notFound(`reference ${JSON.stringify(ref)}`, this.dir);
  }

  /**
   * fetch streams a blob, failing with DIGEST_MISMATCH or SIZE_MISMATCH at
   * the end when the file is not what `desc` says.
   * @throws NOT_FOUND
   */
  async fetch(desc: Descriptor, options: IoOptions = {}): Promise<Readable> {
    throwIfAborted(options.signal);
    const fh = await openRegularFile(this.dir, blobParts(desc.digest)).catch((err: unknown) => {
      throw codeOf(err) === 'ENOENT' ? notFound(`blob ${desc.digest}`, this.dir, err) : err;
    });
    const file = createReadStream('', { fd: fh, signal: options.signal });
    const verifier = new VerifyingStream(desc, desc.mediaType);
    pipeline(file, verifier).catch(() => undefined);
    return verifier;
  }

  /** exists tells whether the blob is stored with the descriptor's size. */
  async exists(desc: Descriptor, options: IoOptions = {}): Promise<boolean> {
    throwIfAborted(options.signal);
    // lstat: a symlinked blob is not one the layout holds.
    const s = await lstat(this.#blobPath(desc.digest)).catch(() => undefined);
    return s?.isFile() === true && s.size === desc.size;
  }

  async #ingest(
    content: Readable,
    check: VerifyingStream | HashingStream | undefined,
    options: IoOptions,
    final: () => Digest,
  ): Promise<void> {
    await this.init();
    const tmp = join(this.dir, `.lading-tmp-${randomUUID()}`);
    const out = createWriteStream(tmp, { flags: 'wx', highWaterMark: writeHighWaterMark });
    try {
      await (check === undefined
        ? pipeline(content, out, { signal: options.signal })
        : pipeline(content, check, out, { signal: options.signal }));
      const digest = final();
      await makeDirectory(join(this.dir, 'blobs', digestAlgorithm(digest)));
      await rename(tmp, this.#blobPath(digest));
    } catch (err) {
      // An abort can reject the pipeline while the file's open() is still in
      // flight; wait for the stream to close so the rm below sees the file.
      if (!out.closed) await once(out, 'close').catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /** canSink is true: a layout takes any blob as chunks. */
  canSink(_desc: Descriptor): boolean {
    return true;
  }

  /**
   * openSink opens the store of blob `desc` as a temp file that chunks are
   * written into at their offsets; commit renames it into `blobs/`, abort
   * removes it. The caller verifies the bytes (copy() does) before it
   * commits. Undefined when the layout already holds the blob (copy()'s
   * push then sees it there).
   */
  async openSink(desc: Descriptor, options: IoOptions = {}): Promise<BlobSink | undefined> {
    if (await this.exists(desc, options)) return undefined;
    await this.init();
    const tmp = join(this.dir, `.lading-tmp-${randomUUID()}`);
    const file = await open(tmp, 'wx');
    let isOpen = true;
    const close = async (): Promise<void> => {
      if (!isOpen) return;
      isOpen = false;
      await file.close();
    };
    return {
      write: async (chunk, offset) => {
        throwIfAborted(options.signal);
        for (let done = 0; done < chunk.length;) {
          const { bytesWritten } = await file.write(
            chunk,
            done,
            chunk.length - done,
            offset + done,
          );
          done += bytesWritten;
        }
      },
      commit: async () => {
        await close();
        await makeDirectory(join(this.dir, 'blobs', digestAlgorithm(desc.digest)));
        await rename(tmp, this.#blobPath(desc.digest));
      },
      abort: async () => {
        await close().catch(() => undefined);
        await rm(tmp, { force: true });
      },
    };
  }

  /**
   * push stores a blob: it streams to a temp file, is verified against
   * `desc`, and is renamed into `blobs/`. A blob already present is not
   * rewritten (the content is discarded). Content marked as checking itself
   * against `desc` (markVerified) is not hashed again: it fails before it
   * ends when its bytes are wrong, and the rename waits for a clean end.
   * @throws DIGEST_MISMATCH, SIZE_MISMATCH, ABORTED
   */
  async push(desc: Descriptor, content: Readable, options: IoOptions = {}): Promise<void> {
    if (await this.exists(desc, options)) {
      content.destroy();
      return;
    }
    await this.#ingest(
      content,
      isVerified(content, desc) ? undefined : new VerifyingStream(desc, desc.mediaType),
      options,
      () => desc.digest,
    );
  }

  /** pushUnknown stores a blob of unknown digest, hashing it on the way (sha256). */
  async pushUnknown(
    content: Readable,
    mediaType: MediaTypeString,
    options: IoOptions = {},
  ): Promise<Descriptor> {
    const hashing = new HashingStream();
    let digest: Digest | undefined;
    await this.#ingest(content, hashing, options, () => {
      digest = hashing.digest;
      if (digest === undefined) throw new LadingError(ErrorCode.Io, 'hash not computed');
      return digest;
    });
    if (digest === undefined) throw new LadingError(ErrorCode.Io, 'hash not computed');
    return { mediaType, digest, size: hashing.size };
  }

  async #updateIndex(
    update: (index: IndexManifest) => IndexManifest,
    options: IoOptions,
  ): Promise<void> {
    await this.init();
    const indexPath = join(this.dir, 'index.json');
    await withFileLock(
      `${indexPath}.lock`,
      async () => {
        const next = update(await this.index(options));
        const tmp = `${indexPath}.${randomUUID()}.tmp`;
        try {
          await writeFile(tmp, JSON.stringify(next), { flag: 'wx' });
          await rename(tmp, indexPath);
        } catch (err) {
          await rm(tmp, { force: true });
          throw err;
        }
      },
      {
        timeoutMs: this.#options.lockTimeoutMs,
        staleMs: this.#options.staleLockMs,
        signal: options.signal,
      },
    );
  }

  /**
   * tag records `ref` in `index.json` as the `org.opencontainers.image.ref.name`
   * of `desc`, replacing an earlier entry with that name. A digest `ref`
   * adds an untagged entry (keeping the manifest alive through `gc()`).
   * @throws NOT_FOUND when the manifest blob is not in the layout, TIMEOUT (lock)
   */
  async tag(desc: Descriptor, ref: string, options: IoOptions = {}): Promise<void> {
    if (!(await this.exists(desc, options))) {
      throw notFound(`manifest ${desc.digest} (push it before tagging)`, this.dir);
    }
    const entry: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
    if (desc.platform !== undefined) entry.platform = desc.platform;
    if (desc.artifactType !== undefined) entry.artifactType = desc.artifactType;
    const { [refNameAnnotation]: _old, ...annotations } = desc.annotations ?? {};
    if (!isDigest(ref)) annotations[refNameAnnotation] = ref;
    if (Object.keys(annotations).length > 0) entry.annotations = annotations;
    await this.#updateIndex((index) => {
      const manifests = index.manifests.filter((d) =>
        isDigest(ref)
          ? !(d.digest === ref && d.annotations?.[refNameAnnotation] === undefined)
          : d.annotations?.[refNameAnnotation] !== ref,
      );
      manifests.push(entry);
      return { ...index, manifests };
    }, options);
  }

  /**
   * untag removes every `index.json` entry named `ref`, or for a digest
   * every entry of that manifest, named or not; resolves whether one
   * existed.
   */
  async untag(ref: string, options: IoOptions = {}): Promise<boolean> {
    let removed = false;
    const byDigest = isDigest(ref);
    await this.#updateIndex((index) => {
      const manifests = index.manifests.filter((d) =>
        byDigest ? d.digest !== ref : d.annotations?.[refNameAnnotation] !== ref,
      );
      removed = manifests.length !== index.manifests.length;
      return { ...index, manifests };
    }, options);
    return removed;
  }

  /**
   * gc removes every blob not reachable from `index.json` (and leftover temp
   * files older than an hour). It holds the index lock while it runs, but a
   * concurrent writer that has pushed blobs and not tagged them yet can lose
   * them: run it when no copy into the layout is in flight.
   */
  async gc(options: IoOptions = {}): Promise<GcResult> {
    await this.init();
    return withFileLock(
      join(this.dir, 'index.json.lock'),
      async () => sweep(this.dir, await this.list(options), options.signal),
      {
        timeoutMs: this.#options.lockTimeoutMs,
        staleMs: this.#options.staleLockMs,
        signal: options.signal,
      },
    );
  }

  /** readBlob reads a small blob (manifest or config, ≤ 4 MiB) whole. @throws NOT_FOUND */
  async readBlob(digest: Digest): Promise<Buffer> {
    try {
      return await readSmall(this.dir, blobParts(digest), MAX_MANIFEST_SIZE);
    } catch (err) {
      if (codeOf(err) === 'ENOENT') throw notFound(`blob ${digest}`, this.dir, err);
      throw err;
    }
  }

  /** blobExists tells whether a blob file is present (any size). */
  async blobExists(digest: Digest): Promise<boolean> {
    return (await lstat(this.#blobPath(digest)).catch(() => undefined))?.isFile() === true;
  }
}

/**
 * ociLayout opens (lazily: no I/O happens until the first call) an OCI
 * image layout at `dir`; the first write creates it.
 */
export function ociLayout(dir: string, options: OciLayoutOptions = {}): OciLayout {
  return new OciLayout(dir, options);
}
