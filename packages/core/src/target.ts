import type { Readable } from 'node:stream';
import type { MediaTypeString } from './media-types.js';
import type { Descriptor } from './wire.js';

/** IoOptions are what every I/O call accepts. */
export interface IoOptions {
  readonly signal?: AbortSignal | undefined;
}

/** ResolveOptions configure {@link Target.resolve}. */
export interface ResolveOptions extends IoOptions {
  /**
   * fetchNext says the caller reads the manifest right after resolving it,
   * as copy() does: a target that can answer both with one request (a
   * registry's GET by tag instead of a HEAD and a GET) may, and keeps the
   * bytes for that fetch.
   */
  readonly fetchNext?: boolean | undefined;
}

/**
 * Target is somewhere content lives: a registry repository, an OCI layout, a
 * docker archive or memory. `copy()` moves graphs between any two.
 * @see docs/design.md (Targets and copy)
 */
export interface Target {
  /** resolve maps a tag (or digest) to the root descriptor. @throws NOT_FOUND */
  resolve(ref: string, options?: ResolveOptions): Promise<Descriptor>;
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

/**
 * Retrier is a target that knows which of its failures are temporary (a
 * registry: 408, 429, 5xx, a dropped connection) and how long to wait before
 * trying again. `copy()` runs each blob's whole transfer — the source's
 * fetch, a new push — through the destination's withRetry, else the
 * source's, so that a transfer cut short starts over instead of failing the
 * copy.
 */
export interface Retrier {
  /**
   * withRetry runs `fn` and runs it again after a temporary failure, telling
   * `onRetry` first; it throws the last failure, or any other at once.
   */
  withRetry<T>(
    fn: (attempt: number) => Promise<T>,
    signal?: AbortSignal,
    onRetry?: (attempt: number, delayMs: number, err: unknown) => void,
  ): Promise<T>;
}

/** isRetrier tells whether a target retries its temporary failures. */
export function isRetrier(target: Target): target is Target & Retrier {
  return typeof (target as Partial<Retrier>).withRetry === 'function';
}

/**
 * PreparedPush is a blob push whose target has made its first request (a
 * registry's upload POST) and waits for the bytes.
 */
export interface PreparedPush {
  /** push stores `content`, verifying it as Target.push does; a failure gives the push up. */
  push(content: Readable, options?: IoOptions): Promise<void>;
  /** cancel gives up a push whose bytes will not come. */
  cancel(): Promise<void>;
}

/**
 * PushPreparer is a target whose blob push starts with a request of its own
 * (a registry's upload POST). `copy()` prepares the push while the source's
 * GET is in flight, so that the two round trips overlap.
 */
export interface PushPreparer {
  /** preparePush opens the push of `desc`, a blob; feed it with the returned push(). */
  preparePush(desc: Descriptor, options?: IoOptions): Promise<PreparedPush>;
}

/** isPushPreparer tells whether a target can open a blob push before its bytes are at hand. */
export function isPushPreparer(target: Target): target is Target & PushPreparer {
  return typeof (target as Partial<PushPreparer>).preparePush === 'function';
}

/**
 * TagPusher is a target that stores a manifest and points a tag at it in one
 * request (a registry's PUT by tag stores it by digest as well). `copy()`
 * pushes the root that way, instead of pushing it by digest and tagging it.
 */
export interface TagPusher {
  /** pushTagged stores the manifest `bytes` (described by `desc`) under `tag`. */
  pushTagged(desc: Descriptor, bytes: Uint8Array, tag: string, options?: IoOptions): Promise<void>;
}

/** isTagPusher tells whether a target can store a manifest under a tag in one step. */
export function isTagPusher(target: Target): target is Target & TagPusher {
  return typeof (target as Partial<TagPusher>).pushTagged === 'function';
}

/**
 * BlobLender is a target that can hand a blob's bytes out in lent chunks:
 * memory it reads into again once the taker is done with a chunk, instead
 * of fresh memory per read. `copy()` uses it with a {@link SinkOpener}.
 */
export interface BlobLender {
  /** canLend says whether `lend` may lend `desc` (it may still answer false). */
  canLend(desc: Descriptor): boolean;
  /**
   * lend reads the blob `desc` and calls `take` with each chunk, in order;
   * a chunk's memory is reused once the promise `take` returned has
   * settled. The bytes are not verified: the taker checks them. Resolves
   * true after the last take settled, or false, having taken nothing, when
   * this blob cannot be lent here (the caller then uses `fetch`).
   * @throws ABORTED, NETWORK, or what `take` threw
   */
  lend(
    desc: Descriptor,
    take: (chunk: Buffer) => Promise<void> | void,
    options?: IoOptions,
  ): Promise<boolean>;
}

/** isBlobLender tells whether a target can lend a blob's bytes. */
export function isBlobLender(target: Target): target is Target & BlobLender {
  return typeof (target as Partial<BlobLender>).lend === 'function';
}

/**
 * BlobSink takes one blob's bytes at given offsets, several at once (a
 * file in any order, a registry upload in order), and stores the blob only
 * when committed.
 */
export interface BlobSink {
  /** write stores `chunk` at `offset`; the chunk is the caller's again once the promise settles. */
  write(chunk: Buffer, offset: number): Promise<void>;
  /** commit stores the blob; call it once every write has settled and the bytes were verified. */
  commit(): Promise<void>;
  /** abort drops what was written (after any failure; harmless after commit). */
  abort(): Promise<void>;
}

/**
 * SinkOpener is a target that can store a blob from chunks written at
 * offsets (a file): with a {@link BlobLender} source, `copy()` moves the
 * blob without a stream between them, verifying it on the way.
 */
export interface SinkOpener {
  /** canSink says whether `openSink` may take `desc` as chunks (it may still answer undefined). */
  canSink(desc: Descriptor): boolean;
  /**
   * openSink opens the store of blob `desc`; undefined when the target
   * cannot take it as chunks (copy() then streams it to `push`).
   */
  openSink(desc: Descriptor, options?: IoOptions): Promise<BlobSink | undefined>;
}

/** isSinkOpener tells whether a target can store a blob from written chunks. */
export function isSinkOpener(target: Target): target is Target & SinkOpener {
  return typeof (target as Partial<SinkOpener>).openSink === 'function';
}
