/**
 * A process-wide pool of 1 MiB block buffers shared by the directory walker
 * and blocks-mode gzip, so that a directory layer compressed on workers
 * allocates no tar memory in its steady state: the walker reads files into
 * a pooled block, gzip transfers that very block to a worker (no copy), and
 * the worker hands it back to the pool.
 *
 * Only blocks marked as handed out by {@link takeBlock} may be transferred
 * without a copy, and only by a consumer that knows nobody else holds them
 * (the compressed side of a layer pass over a pooled walker).
 */

/** blockSize is the size of a pooled block, and of a blocks-mode gzip block. */
export const blockSize = 1024 * 1024;

/** At most this many free blocks are kept. */
const maxFree = 16;

const free: ArrayBuffer[] = [];
const pooled = new WeakSet<ArrayBuffer>();

/** takeBlock returns a block that owns its whole ArrayBuffer, marked as pooled. */
export function takeBlock(): Buffer {
  const ab = free.pop() ?? new ArrayBuffer(blockSize);
  pooled.add(ab);
  return Buffer.from(ab, 0, blockSize);
}

/**
 * adoptable tells whether `b` is a whole pooled block; if so it is unmarked,
 * so that it is adopted at most once.
 */
export function adoptable(b: Uint8Array): boolean {
  if (b.byteOffset !== 0 || b.byteLength !== blockSize) return false;
  const ab = b.buffer;
  if (!(ab instanceof ArrayBuffer) || ab.byteLength !== blockSize || !pooled.has(ab)) return false;
  pooled.delete(ab);
  return true;
}

/** giveBack returns a block nobody holds any more to the pool. */
export function giveBack(b: Uint8Array): void {
  const ab = b.buffer;
  if (!(ab instanceof ArrayBuffer) || ab.byteLength !== blockSize || b.byteLength !== blockSize)
    return;
  if (free.length < maxFree) free.push(ab);
}
