// The compression floor's inner loop, shared by task.ts (one thread) and
// floor-worker.ts (one of several): the 1 MiB blocks of a tar in memory
// compressed the way layers compress them.
import { blockGzipSize, blockGzipSync, zstdFrameSync } from '@lading/core/internal';

/**
 * compressBlocks compresses every `stride`-th 1 MiB block of `tar` from
 * block `first` (gzip members or zstd frames) and answers the output size.
 */
export function compressBlocks(
  tar: Uint8Array,
  compression: 'gzip' | 'zstd',
  level: number,
  first = 0,
  stride = 1,
): number {
  let out = 0;
  for (let off = first * blockGzipSize; off < tar.length; off += stride * blockGzipSize) {
    const block = tar.subarray(off, off + blockGzipSize);
    out +=
      compression === 'gzip'
        ? blockGzipSync(block, level).length
        : zstdFrameSync(block, level).length;
  }
  return out;
}

/** warmUp compresses a small slice first (module compilation, first allocations), before any clock starts. */
export function warmUp(tar: Uint8Array, compression: 'gzip' | 'zstd', level: number): void {
  compressBlocks(tar.subarray(0, 4096), compression, level);
}
