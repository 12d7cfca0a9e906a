import type { Readable } from 'node:stream';
import type { Digest } from './digest.js';

/** What a stream vouches for: the digest and size its bytes must have. */
export interface VerifiedContent {
  readonly digest: Digest;
  readonly size: number;
}

const vouched = new WeakMap<Readable, string>();

function keyOf(expected: VerifiedContent): string {
  return `${expected.digest}/${expected.size}`;
}

/**
 * markVerified records that `stream` checks its own bytes against
 * `expected`: it fails instead of ending when they hash or count
 * differently. A consumer that commits only after the stream has ended
 * cleanly (an upload's final PUT, a layout's rename) need not hash the
 * bytes again. Mark a stream only when that holds — a pass-through fed by a
 * marked stream through `pipeline` does.
 */
export function markVerified<T extends Readable>(stream: T, expected: VerifiedContent): T {
  vouched.set(stream, keyOf(expected));
  return stream;
}

/** isVerified tells whether `stream` was marked as checking its bytes against `expected`. */
export function isVerified(stream: Readable, expected: VerifiedContent): boolean {
  return vouched.get(stream) === keyOf(expected);
}

const digesting = new WeakMap<Readable, () => Promise<VerifiedContent>>();

/**
 * markDigesting records that `stream` hashes and counts exactly the bytes
 * it yields: once it has ended cleanly, `content()` resolves their sha256
 * digest and size (and rejects when the stream failed). A consumer that
 * commits only after the stream has ended cleanly (an upload's final PUT)
 * may take them from it instead of hashing the bytes a second time. Mark
 * the very stream the consumer reads, never one that feeds another.
 */
export function markDigesting<T extends Readable>(
  stream: T,
  content: () => Promise<VerifiedContent>,
): T {
  digesting.set(stream, content);
  return stream;
}

/** ownDigest answers how to ask a stream marked by {@link markDigesting} for its digest and size. */
export function ownDigest(stream: Readable): (() => Promise<VerifiedContent>) | undefined {
  return digesting.get(stream);
}
