import { sha256 as nobleSha256, sha512 as nobleSha512 } from '@noble/hashes/sha2.js';
import { Transform, type TransformCallback } from 'node:stream';
import { DigestMismatchError, InvalidDigestError, SizeMismatchError } from './errors.js';
import { markVerified } from './verified.js';

/** DigestAlgorithm is a hash algorithm lading accepts in digests. */
export type DigestAlgorithm = 'sha256' | 'sha512';

/**
 * Digest is a content identifier `algorithm:hex`. Create values only with
 * {@link parseDigest}, {@link toDigest} or {@link digestOf}.
 * @see https://github.com/opencontainers/image-spec/blob/main/descriptor.md#digests
 */
export type Digest = `sha256:${string}` | `sha512:${string}`;

const hexLength: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };
const lowerHex = /^[a-f0-9]+$/;

/**
 * parseDigest validates `text` as a digest lading can verify: `sha256` with 64
 * or `sha512` with 128 lowercase hex characters.
 * @throws INVALID_DIGEST with the reason.
 */
export function parseDigest(text: string): Digest {
  if (typeof text !== 'string') throw new InvalidDigestError(String(text), 'not a string');
  const colon = text.indexOf(':');
  if (colon < 0) throw new InvalidDigestError(text, 'missing "algorithm:" prefix');
  const algorithm = text.slice(0, colon);
  const hex = text.slice(colon + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw new InvalidDigestError(
      text,
      `unsupported algorithm ${JSON.stringify(algorithm.slice(0, 32))} (want sha256 or sha512)`,
    );
  }
  if (hex.length !== hexLength[algorithm]) {
    throw new InvalidDigestError(
      text,
      `${algorithm} needs ${hexLength[algorithm]} hex characters, got ${hex.length}`,
    );
  }
  if (!lowerHex.test(hex))
    throw new InvalidDigestError(text, 'the hex part must be lowercase 0-9a-f');
  return text as Digest;
}

/** isDigest tells whether `text` is a valid digest, without throwing. */
export function isDigest(text: unknown): text is Digest {
  if (typeof text !== 'string') return false;
  try {
    parseDigest(text);
    return true;
  } catch {
    return false;
  }
}

/** toDigest builds a digest from an algorithm and its hex value. */
export function toDigest(algorithm: DigestAlgorithm, hex: string): Digest {
  return parseDigest(`${algorithm}:${hex}`);
}

/** digestAlgorithm returns the algorithm part of a digest. */
export function digestAlgorithm(digest: Digest): DigestAlgorithm {
  return digest.startsWith('sha512:') ? 'sha512' : 'sha256';
}

/** digestHex returns the hex part of a digest. */
export function digestHex(digest: Digest): string {
  return digest.slice(digest.indexOf(':') + 1);
}

/** Hasher is an incremental hash: update with bytes, then read the digest once. */
export interface Hasher {
  update(bytes: Uint8Array): void;
  digest(): Digest;
}

interface NodeCrypto {
  createHash(algorithm: string): { update(b: Uint8Array): unknown; digest(enc: 'hex'): string };
}

function loadNodeCrypto(): NodeCrypto | undefined {
  // process.getBuiltinModule keeps core loadable where node:crypto is absent.
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  try {
    return proc?.getBuiltinModule?.('node:crypto') as NodeCrypto | undefined;
  } catch {
    return undefined;
  }
}

const nodeCrypto = loadNodeCrypto();

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/**
 * createHasher returns an incremental hasher: node:crypto on the hot path,
 * @noble/hashes where node:crypto is absent (or when `portable` is set).
 */
export function createHasher(algorithm: DigestAlgorithm = 'sha256', portable = false): Hasher {
  if (nodeCrypto !== undefined && !portable) {
    const h = nodeCrypto.createHash(algorithm);
    return {
      update: (bytes) => void h.update(bytes),
      digest: () => `${algorithm}:${h.digest('hex')}` as Digest,
    };
  }
  const h = algorithm === 'sha512' ? nobleSha512.create() : nobleSha256.create();
  return {
    update: (bytes) => void h.update(bytes),
    digest: () => `${algorithm}:${toHex(h.digest())}` as Digest,
  };
}

/** digestOf hashes bytes (strings are UTF-8 encoded) into a digest. */
export function digestOf(
  bytes: Uint8Array | string,
  algorithm: DigestAlgorithm = 'sha256',
): Digest {
  const h = createHasher(algorithm);
  h.update(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes);
  return h.digest();
}

/**
 * HashingStream is a pass-through that hashes and counts the bytes flowing
 * through it. `digest` and `size` are valid once the stream has ended; read
 * them from the `'end'`/`'finish'` handlers or after `pipeline` resolves.
 */
export class HashingStream extends Transform {
  #hasher: Hasher;
  #size = 0;
  #digest: Digest | undefined;

  constructor(algorithm: DigestAlgorithm = 'sha256') {
    super();
    this.#hasher = createHasher(algorithm);
  }

  /** size is the number of bytes seen so far. */
  get size(): number {
    return this.#size;
  }

  /** digest is the digest of every byte seen; undefined until the stream has flushed. */
  get digest(): Digest | undefined {
    return this.#digest;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hasher.update(chunk);
    this.#size += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.#digest = this.#hasher.digest();
    callback();
  }
}

/**
 * Verifier checks bytes against what `expected` describes as they pass:
 * `update` fails with SIZE_MISMATCH as soon as the size is exceeded,
 * `finish` with SIZE_MISMATCH or DIGEST_MISMATCH when the bytes seen are
 * not the content. {@link VerifyingStream} is one as a stream.
 */
export class Verifier {
  readonly #hasher: Hasher;
  #size = 0;
  readonly #digest: Digest;
  readonly #expectedSize: number | undefined;
  readonly #what: string;
  readonly #diffId: boolean;

  /** With `diffId`, a mismatch is a DigestMismatchError whose `diffId` is true: the bytes are a layer's tar checked against its config. */
  constructor(
    expected: { digest: Digest; size?: number | undefined },
    what = 'blob',
    options: { readonly diffId?: boolean } = {},
  ) {
    this.#digest = expected.digest;
    this.#expectedSize = expected.size;
    this.#what = what;
    this.#diffId = options.diffId ?? false;
    this.#hasher = createHasher(digestAlgorithm(expected.digest));
  }

  /** size is the number of bytes seen so far. */
  get size(): number {
    return this.#size;
  }

  /** update hashes `chunk`. @throws SIZE_MISMATCH past the expected size */
  update(chunk: Uint8Array): void {
    this.#size += chunk.length;
    if (this.#expectedSize !== undefined && this.#size > this.#expectedSize) {
      throw new SizeMismatchError(this.#expectedSize, this.#size, `${this.#what} ${this.#digest}`);
    }
    this.#hasher.update(chunk);
  }

  /** finish checks the bytes seen; call it once. @throws SIZE_MISMATCH, DIGEST_MISMATCH */
  finish(): void {
    if (this.#expectedSize !== undefined && this.#size !== this.#expectedSize) {
      throw new SizeMismatchError(this.#expectedSize, this.#size, `${this.#what} ${this.#digest}`);
    }
    const actual = this.#hasher.digest();
    if (actual !== this.#digest)
      throw new DigestMismatchError(this.#digest, actual, this.#what, { diffId: this.#diffId });
  }
}

/**
 * VerifyingStream passes bytes through and fails the stream with
 * DIGEST_MISMATCH or SIZE_MISMATCH at the end (or as soon as the size is
 * exceeded) when the content is not what `expected` describes.
 */
export class VerifyingStream extends Transform {
  readonly #verifier: Verifier;

  constructor(
    expected: { digest: Digest; size?: number | undefined },
    what = 'blob',
    options: { readonly diffId?: boolean } = {},
  ) {
    super();
    this.#verifier = new Verifier(expected, what, options);
    if (expected.size !== undefined)
      markVerified(this, { digest: expected.digest, size: expected.size });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.#verifier.update(chunk);
    } catch (err) {
      callback(err as Error);
      return;
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.#verifier.finish();
    } catch (err) {
      callback(err as Error);
      return;
    }
    callback();
  }
}
