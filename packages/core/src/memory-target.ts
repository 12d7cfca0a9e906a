import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HashingStream, VerifyingStream, isDigest, type Digest } from './digest.js';
import { ErrorCode, LadingError, throwIfAborted } from './errors.js';
import type { MediaTypeString } from './media-types.js';
import type { BlobWriter, IoOptions, Target } from './target.js';
import type { Descriptor } from './wire.js';

type Stored = { readonly bytes: Buffer; readonly mediaType: MediaTypeString };

/** Collects a stream's chunks; the memory target legitimately buffers. */
class Collector extends Writable {
  readonly chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error) => void): void {
    this.chunks.push(chunk);
    callback();
  }
}

function notFound(what: string): LadingError {
  return new LadingError(ErrorCode.NotFound, `${what} not found in the memory target`);
}

/**
 * MemoryTarget is a {@link Target} that keeps blobs and tags in Maps. Every
 * push is verified against its descriptor (digest and size). Meant for tests,
 * small artifacts and as the in-between of two streaming targets; it holds
 * every byte in memory.
 */
export class MemoryTarget implements Target, BlobWriter {
  readonly #blobs = new Map<Digest, Stored>();
  readonly #tags = new Map<string, Descriptor>();

  /** resolve maps a tag, or a digest of stored content, to its descriptor. @throws NOT_FOUND */
  resolve(ref: string, options: IoOptions = {}): Promise<Descriptor> {
    throwIfAborted(options.signal);
    const tagged = this.#tags.get(ref);
    if (tagged !== undefined) return Promise.resolve({ ...tagged });
    if (isDigest(ref)) {
      const stored = this.#blobs.get(ref);
      if (stored !== undefined) {
        return Promise.resolve({
          mediaType: stored.mediaType,
          digest: ref,
          size: stored.bytes.length,
        });
      }
    }
    return Promise.reject(notFound(`reference ${JSON.stringify(ref)}`));
  }

  /** fetch streams a stored blob. @throws NOT_FOUND */
  fetch(desc: Descriptor, options: IoOptions = {}): Promise<Readable> {
    throwIfAborted(options.signal);
    const stored = this.#blobs.get(desc.digest);
    if (stored === undefined) return Promise.reject(notFound(`blob ${desc.digest}`));
    return Promise.resolve(Readable.from([stored.bytes], { objectMode: false }));
  }

  /** exists tells whether the blob is stored (with the descriptor's size). */
  exists(desc: Descriptor, options: IoOptions = {}): Promise<boolean> {
    throwIfAborted(options.signal);
    const stored = this.#blobs.get(desc.digest);
    return Promise.resolve(stored?.bytes.length === desc.size);
  }

  /**
   * push stores `content` after checking it against `desc`.
   * @throws DIGEST_MISMATCH, SIZE_MISMATCH, ABORTED
   */
  async push(desc: Descriptor, content: Readable, options: IoOptions = {}): Promise<void> {
    const sink = new Collector();
    await pipeline(content, new VerifyingStream(desc, 'blob'), sink, {
      signal: options.signal,
    });
    this.#blobs.set(desc.digest, { bytes: Buffer.concat(sink.chunks), mediaType: desc.mediaType });
  }

  /** pushUnknown stores `content`, hashing it, and returns its descriptor. */
  async pushUnknown(
    content: Readable,
    mediaType: MediaTypeString,
    options: IoOptions = {},
  ): Promise<Descriptor> {
    const hashing = new HashingStream();
    const sink = new Collector();
    await pipeline(content, hashing, sink, { signal: options.signal });
    const digest = hashing.digest;
    if (digest === undefined) throw new LadingError(ErrorCode.Io, 'hashing stream did not flush');
    const bytes = Buffer.concat(sink.chunks);
    this.#blobs.set(digest, { bytes, mediaType });
    return { mediaType, digest, size: bytes.length };
  }

  /** tag points `ref` at a stored manifest. @throws NOT_FOUND when the manifest was not pushed */
  tag(desc: Descriptor, ref: string, options: IoOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    if (!this.#blobs.has(desc.digest)) {
      return Promise.reject(notFound(`manifest ${desc.digest} (push it before tagging)`));
    }
    this.#tags.set(ref, { mediaType: desc.mediaType, digest: desc.digest, size: desc.size });
    return Promise.resolve();
  }

  /** tags lists the tags, sorted. */
  tags(): string[] {
    return [...this.#tags.keys()].sort();
  }

  /** digests lists every stored blob's digest. */
  digests(): Digest[] {
    return [...this.#blobs.keys()];
  }

  /** bytes returns a stored blob's bytes (a copy), or undefined. */
  bytes(digest: Digest): Uint8Array | undefined {
    const stored = this.#blobs.get(digest);
    return stored === undefined ? undefined : Uint8Array.from(stored.bytes);
  }

  /** delete removes a blob (tags pointing at it stay; they then fail to fetch). */
  delete(digest: Digest): boolean {
    return this.#blobs.delete(digest);
  }
}

/** memoryTarget makes an empty {@link MemoryTarget}. */
export function memoryTarget(): MemoryTarget {
  return new MemoryTarget();
}
