import type { Readable } from 'node:stream';
import type { MediaTypeString } from './media-types.js';
import type { Descriptor } from './wire.js';

/** IoOptions are what every I/O call accepts. */
export interface IoOptions {
  readonly signal?: AbortSignal | undefined;
}

/**
 * Target is somewhere content lives: a registry repository, an OCI layout, a
 * docker archive or memory. `copy()` moves graphs between any two.
 * @see docs/design.md (Targets and copy)
 */
export interface Target {
  /** resolve maps a tag (or digest) to the root descriptor. @throws NOT_FOUND */
  resolve(ref: string, options?: IoOptions): Promise<Descriptor>;
  /** fetch streams content; the stream fails with DIGEST_MISMATCH if it is not what `desc` says. @throws NOT_FOUND */
  fetch(desc: Descriptor, options?: IoOptions): Promise<Readable>;
  exists(desc: Descriptor, options?: IoOptions): Promise<boolean>;
  /** push stores content, verifying it against `desc`. */
  push(desc: Descriptor, content: Readable, options?: IoOptions): Promise<void>;
  /** tag points `ref` at an already-pushed manifest. */
  tag(desc: Descriptor, ref: string, options?: IoOptions): Promise<void>;
}

/** Mounter is a target that can link a blob from another repository of the same registry. */
export interface Mounter {
  /** mount links `desc` from `fromRepository`; resolves false when the registry declined. */
  mount(desc: Descriptor, fromRepository: string, options?: IoOptions): Promise<boolean>;
  /** registryHost identifies the registry, so copy() mounts only within one. */
  readonly registryHost: string;
  readonly repository: string;
}

/** isMounter tells whether a target supports cross-repository mounts. */
export function isMounter(target: Target): target is Target & Mounter {
  return typeof (target as Partial<Mounter>).mount === 'function';
}

/**
 * BlobWriter is a target that can store a blob whose digest is not known
 * before its bytes have flowed (a single-pass stream layer): it hashes while
 * writing and reports the descriptor at the end. `writeImage()` uses it for
 * layers without a `knownDescriptor()`.
 */
export interface BlobWriter {
  /** pushUnknown stores `content`, hashing it on the way, and resolves with its descriptor. */
  pushUnknown(
    content: Readable,
    mediaType: MediaTypeString,
    options?: IoOptions,
  ): Promise<Descriptor>;
}

/** isBlobWriter tells whether a target can store blobs of unknown digest. */
export function isBlobWriter(target: Target): target is Target & BlobWriter {
  return typeof (target as Partial<BlobWriter>).pushUnknown === 'function';
}
