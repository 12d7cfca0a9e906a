// Worker of the compression floor over all cores (task.ts, floor-blocks with
// threads > 1): compresses every `stride`-th 1 MiB block of the shared tar,
// from block `first`, the way layers do, and answers the output size.
import { parentPort, workerData } from 'node:worker_threads';
import { compressBlocks, warmUp } from './compress-blocks.js';

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
warmUp(tar, job.compression, job.level);
parentPort?.postMessage('ready');
parentPort?.once('message', () => {
  parentPort?.postMessage(compressBlocks(tar, job.compression, job.level, job.first, job.stride));
});
