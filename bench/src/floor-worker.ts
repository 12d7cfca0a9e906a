// Worker of the compression floor over all cores (task.ts, floor-blocks with
// threads > 1): compresses every `stride`-th 1 MiB block of the shared tar,
// from block `first`, the way layers do, and answers the output size.
import { parentPort, workerData } from 'node:worker_threads';
import { blockGzipSize, blockGzipSync, zstdFrameSync } from '@lading/core/internal';

interface Job {
  readonly tar: SharedArrayBuffer;
  readonly length: number;
  readonly first: number;
  readonly stride: number;
  readonly compression: 'gzip' | 'zstd';
  readonly level: number;
}

const job = workerData as Job;
const tar = new Uint8Array(job.tar, 0, job.length);
// Warm up (module compilation, first allocation) before the clock starts.
blockGzipSync(tar.subarray(0, 4096), job.level);
parentPort?.postMessage('ready');
parentPort?.once('message', () => {
  let out = 0;
  for (let off = job.first * blockGzipSize; off < tar.length; off += job.stride * blockGzipSize) {
    const block = tar.subarray(off, off + blockGzipSize);
    out +=
      job.compression === 'gzip'
        ? blockGzipSync(block, job.level).length
        : zstdFrameSync(block, job.level).length;
  }
  parentPort?.postMessage(out);
});
