import { Readable } from 'node:stream';
import {
  DigestMismatchError,
  ErrorCode,
  LadingError,
  MAX_MANIFEST_SIZE,
  isDigest,
  isManifestMediaType,
  parseReference,
  readCapped,
  type BlobLender,
  type BlobSink,
  type BlobWriter,
  type Descriptor,
  type IoOptions,
  type MediaTypeString,
  type Mounter,
  type PreparedPush,
  type PushPreparer,
  type Retrier,
  type Reference,
  type ResolveOptions,
  type SinkOpener,
  type TagPusher,
  type Target,
} from '@lading/core';
import { RegistryClient, type RemoteOptions } from './client.js';
import { BlobUpload, type UploadMode } from './upload.js';
import { uploadMode } from './upload-policy.js';

/** RegistryTargetOptions configure {@link registryTarget}. */
export interface RegistryTargetOptions extends RemoteOptions {
  /** uploadMode for blobs (default: monolithic up to 1 MiB of known size, else stream). */
  readonly uploadMode?: UploadMode;
  readonly chunkSize?: number;
}

/**
 * RegistryTarget is one repository of a registry seen as a copy() target:
 * blobs and manifests by digest, tags by name, cross-repository mounts
 * within the same registry, and uploads of blobs whose digest is unknown.
 */
export class RegistryTarget
  implements Target, Mounter, BlobWriter, PushPreparer, TagPusher, BlobLender, SinkOpener, Retrier
{
  readonly registryHost: string;
  readonly repository: string;
  readonly client: RegistryClient;
  readonly #options: RegistryTargetOptions;
  // The manifest this target stored or resolved last, at most 4 MiB. copy()
  // tags the root right after pushing it, and tagging PUTs the same bytes
  // under the tag; it reads a root right after resolving it: kept, they
  // spare a GET.
  #lastManifest: { digest: string; bytes: Uint8Array; mediaType: string } | undefined;

  constructor(repository: string | Reference, options: RegistryTargetOptions = {}) {
    const ref = typeof repository === 'string' ? parseReference(repository) : repository;
    this.registryHost = ref.registry;
    this.repository = ref.repository;
    this.#options = options;
    this.client = new RegistryClient(ref.registry, options);
  }

  #signal(options: IoOptions | undefined): IoOptions {
    return { signal: options?.signal ?? this.#options.signal };
  }

  /**
   * resolve maps a tag or digest of this repository to its manifest
   * descriptor: a HEAD, or with `fetchNext` a GET whose bytes the
   * following {@link fetch} of that manifest reads.
   * @throws NOT_FOUND
   */
  async resolve(ref: string, options?: ResolveOptions): Promise<Descriptor> {
    const notFound = (cause?: unknown): LadingError =>
      new LadingError(
        ErrorCode.NotFound,
        `${this.registryHost}/${this.repository}${ref.includes(':') ? '@' : ':'}${ref} not found`,
        cause === undefined ? undefined : { cause },
      );
    if (options?.fetchNext === true) {
      const m = await this.client
        .getManifest(this.repository, ref, this.#signal(options))
        .catch((err: unknown) => {
          throw err instanceof LadingError && err.code === ErrorCode.NotFound ? notFound(err) : err;
        });
      this.#lastManifest = m;
      return { mediaType: m.mediaType, digest: m.digest, size: m.size };
    }
    const desc = await this.client.headManifest(this.repository, ref, this.#signal(options));
    if (desc === undefined) throw notFound();
    return desc;
  }

  /** fetch streams a manifest or blob, verified against `desc`. @throws NOT_FOUND, DIGEST_MISMATCH */
  async fetch(desc: Descriptor, options?: IoOptions): Promise<Readable> {
    if (isManifestMediaType(desc.mediaType)) {
      const last = this.#lastManifest;
      const m =
        last?.digest === desc.digest
          ? last
          : await this.client.getManifest(this.repository, desc.digest, this.#signal(options));
      return Readable.from([m.bytes]);
    }
    return this.client.getBlob(this.repository, desc.digest, {
      ...this.#signal(options),
      size: desc.size,
    });
  }

  /**
   * withRetry runs `fn` under the client's retry policy (`retry` option:
   * 408, 429, 5xx, dropped connections; backoff with jitter, Retry-After):
   * copy() runs each blob's transfer through it, so that one cut short
   * starts over, fetched again into a new upload session.
   */
  withRetry<T>(
    fn: (attempt: number) => Promise<T>,
    signal?: AbortSignal,
    onRetry?: (attempt: number, delayMs: number, err: unknown) => void,
  ): Promise<T> {
    return this.client.transport.withRetry(fn, signal, onRetry);
  }

  /** canLend says whether {@link lend} may lend `desc`: a blob of a plain-HTTP registry. */
  canLend(desc: Descriptor): boolean {
    return !isManifestMediaType(desc.mediaType) && this.client.transport.ownSockets;
  }

  /**
   * lend hands a blob's bytes to `take` in reused memory, unverified (see
   * RegistryClient.lendBlob); false when it cannot (use fetch).
   */
  lend(
    desc: Descriptor,
    take: (chunk: Buffer) => Promise<void> | void,
    options?: IoOptions,
  ): Promise<boolean> {
    if (!this.canLend(desc)) return Promise.resolve(false);
    return this.client.lendBlob(this.repository, desc.digest, take, this.#signal(options));
  }

  async exists(desc: Descriptor, options?: IoOptions): Promise<boolean> {
    if (isManifestMediaType(desc.mediaType)) {
      return (
        (await this.client.headManifest(this.repository, desc.digest, this.#signal(options))) !==
        undefined
      );
    }
    return (
      (await this.client.headBlob(this.repository, desc.digest, this.#signal(options))) !==
      undefined
    );
  }

  /** push stores a manifest (by digest) or uploads a blob in one pass, verified. */
  async push(desc: Descriptor, content: Readable, options?: IoOptions): Promise<void> {
    const io = this.#signal(options);
    if (isManifestMediaType(desc.mediaType)) {
      const bytes = await readCapped(content, MAX_MANIFEST_SIZE, io.signal);
      await this.#putManifest(desc, bytes, desc.digest, io);
      return;
    }
    await (await this.preparePush(desc, io)).push(content, io);
  }

  /**
   * preparePush opens the upload session of a blob (the POST), and answers
   * the push that streams `desc`'s bytes into it, verified; a failed push
   * cancels the session.
   */
  async preparePush(desc: Descriptor, options?: IoOptions): Promise<PreparedPush> {
    const session = await this.client.openUpload(this.repository, this.#signal(options));
    return {
      push: async (content, pushOptions) => {
        try {
          await session.upload(content, {
            ...this.#signal(pushOptions ?? options),
            mode: uploadMode(this.#options.uploadMode, desc),
            ...(this.#options.chunkSize === undefined
              ? {}
              : { chunkSize: this.#options.chunkSize }),
            expected: { digest: desc.digest, size: desc.size },
          });
        } catch (err) {
          content.destroy();
          await session.cancel();
          throw err;
        }
      },
      cancel: () => session.cancel(),
    };
  }

  /** canSink says whether {@link openSink} may take `desc`: a streamed blob of a plain-HTTP registry. */
  canSink(desc: Descriptor): boolean {
    return (
      !isManifestMediaType(desc.mediaType) &&
      this.client.transport.ownSockets &&
      uploadMode(this.#options.uploadMode, desc) === 'stream'
    );
  }

  /**
   * openSink opens the upload of a blob that streams (over 1 MiB, unless
   * another `uploadMode` was chosen) as one monolithic `PUT ?digest=` on a
   * connection of its own, for chunks lent in order (copy() from a lending
   * registry, which checks the bytes before it lends the last chunk): each
   * write resolves once the socket has sent the chunk; commit waits for the
   * registry's answer, which stores the blob. Abort cuts the PUT short and
   * deletes the session. Undefined when the registry is not plain HTTP, a
   * dispatcher was given, or the blob goes in another mode: copy() then
   * streams it.
   * @throws REGISTRY_ERROR, UNAUTHORIZED, NETWORK
   */
  async openSink(desc: Descriptor, options?: IoOptions): Promise<BlobSink | undefined> {
    if (!this.canSink(desc)) return undefined;
    const io = this.#signal(options);
    const session = await this.client.openUpload(this.repository, io);
    const put = await session
      .socketCommit(desc.digest, desc.size, io.signal)
      .catch(async (err: unknown) => {
        await session.cancel();
        throw err;
      });
    if (put === undefined) {
      await session.cancel();
      return undefined;
    }
    let sent = 0;
    return {
      write: (chunk, offset) => {
        if (offset !== sent) {
          return Promise.reject(
            new LadingError(
              ErrorCode.InvalidArgument,
              `a registry upload takes its bytes in order (${offset} after ${sent})`,
            ),
          );
        }
        sent += chunk.length;
        return put.write(chunk);
      },
      commit: () => put.done(),
      abort: async () => {
        put.destroy();
        await session.cancel();
      },
    };
  }

  /**
   * pushTagged stores a manifest under `ref`'s tag in one PUT; the registry
   * keeps it by digest too. A full reference that names only a digest
   * (`host/name@sha256:…`) has no tag: the manifest is stored by digest.
   */
  async pushTagged(
    desc: Descriptor,
    bytes: Uint8Array,
    ref: string,
    options?: IoOptions,
  ): Promise<void> {
    await this.#putManifest(desc, bytes, tagOf(ref) ?? desc.digest, this.#signal(options));
  }

  async #putManifest(
    desc: Descriptor,
    bytes: Uint8Array,
    reference: string,
    io: IoOptions,
  ): Promise<void> {
    const put = await this.client.putManifest(
      this.repository,
      reference,
      bytes,
      desc.mediaType,
      io,
    );
    if (put.digest !== desc.digest)
      throw new DigestMismatchError(desc.digest, put.digest, 'manifest');
    this.#lastManifest = { digest: desc.digest, bytes, mediaType: desc.mediaType };
  }

  /** pushUnknown uploads a blob whose digest is computed on the way. */
  async pushUnknown(
    content: Readable,
    mediaType: MediaTypeString,
    options?: IoOptions,
  ): Promise<Descriptor> {
    const io = this.#signal(options);
    const session: BlobUpload = await this.client.openUpload(this.repository, io);
    try {
      const r = await session.upload(content, {
        ...io,
        mode: uploadMode(this.#options.uploadMode, undefined),
      });
      return { mediaType, digest: r.digest, size: r.size };
    } catch (err) {
      content.destroy();
      await session.cancel();
      throw err;
    }
  }

  /**
   * tag points `ref` (a tag of this repository, or a full reference) at a
   * manifest already stored here; a reference with no tag but a digest
   * leaves the tags as they are.
   */
  async tag(desc: Descriptor, ref: string, options?: IoOptions): Promise<void> {
    const io = this.#signal(options);
    const tag = tagOf(ref);
    if (tag === undefined) return;
    const last = this.#lastManifest;
    const m =
      last?.digest === desc.digest
        ? last
        : await this.client.getManifest(this.repository, desc.digest, io);
    await this.client.putManifest(this.repository, tag, m.bytes, m.mediaType, io);
  }

  /** mount links a blob from another repository of this registry; false when the registry declined. */
  async mount(desc: Descriptor, fromRepository: string, options?: IoOptions): Promise<boolean> {
    const r = await this.client.openUploadOrMount(this.repository, {
      ...this.#signal(options),
      mount: { digest: desc.digest, from: fromRepository },
    });
    if (r instanceof BlobUpload) {
      await r.cancel();
      return false;
    }
    return true;
  }
}

/**
 * tagOf is the tag a `ref` names: a bare tag, or the tag of a full
 * reference; `latest` for a reference with neither tag nor digest, and
 * none for a digest (bare, or a reference that names only one).
 */
function tagOf(ref: string): string | undefined {
  if (isDigest(ref)) return undefined;
  if (!ref.includes(':') && !ref.includes('/') && !ref.includes('@')) return ref;
  const parsed = parseReference(ref);
  return parsed.tag ?? (parsed.digest === undefined ? 'latest' : undefined);
}

/**
 * registryTarget opens a repository (`host/name`, any tag or digest in the
 * reference is ignored) as a {@link Target} for `copy()`.
 */
export function registryTarget(
  repository: string | Reference,
  options: RegistryTargetOptions = {},
): RegistryTarget {
  return new RegistryTarget(repository, options);
}
