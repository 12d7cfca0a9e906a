import { Worker } from 'node:worker_threads';

// The worker is plain CommonJS evaluated from a string so that it runs the
// same way from dist/ and from the TypeScript sources under vitest. It
// checksums and deflates one block (or compresses it as one zstd frame),
// and hands the input back for reuse. The zstd call is the one of
// zstdFrameSync in @lading/core, so the bytes are the same.
const workerSource = `
const { parentPort } = require('node:worker_threads');
const zlib = require('node:zlib');
let table;
function crc32(data) {
  if (typeof zlib.crc32 === 'function') return zlib.crc32(data);
  if (table === undefined) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
parentPort.on('message', (job) => {
  const transfer = [job.input.buffer];
  try {
    const data = job.input.subarray(0, job.length);
    // One output chunk for a block (deflate's and zstd's bounds are < 1 % over the input).
    const chunkSize = Math.max(16384, job.length + (job.length >> 6) + 1024);
    let crc = 0;
    let out;
    if (job.codec === 'zstd') {
      out = zlib.zstdCompressSync(data, {
        chunkSize,
        params: { [zlib.constants.ZSTD_c_compressionLevel]: job.level },
      });
    } else {
      crc = crc32(data);
      out = zlib.deflateRawSync(data, {
        level: job.level,
        finishFlush: job.last ? zlib.constants.Z_FINISH : zlib.constants.Z_FULL_FLUSH,
        chunkSize,
      });
    }
    // With one output chunk the result is a view at the start of its own
    // buffer: transfer that buffer as is; otherwise copy to an exclusive one.
    let output = out;
    if (out.byteOffset !== 0 || out.buffer.byteLength > out.length * 4) {
      output = new Uint8Array(out.length);
      output.set(out);
    }
    transfer.push(output.buffer);
    parentPort.postMessage({ id: job.id, output, crc, input: job.input }, transfer);
  } catch (err) {
    parentPort.postMessage({ id: job.id, input: job.input, error: String(err && err.message || err) }, transfer);
  }
});
`;

/** Codec is what a worker compresses a block with. */
export type Codec = 'gzip' | 'zstd';

/** DeflateResult is one deflated block, its CRC-32 and the input handed back. */
export interface DeflateResult {
  readonly output: Buffer;
  readonly crc: number;
  /** input is the block that was given to {@link DeflatePool.deflate}, free again. */
  readonly input: Uint8Array;
}

interface Job {
  readonly id: number;
  readonly input: Uint8Array;
  readonly length: number;
  readonly codec: Codec;
  readonly level: number;
  readonly last: boolean;
  readonly resolve: (r: DeflateResult) => void;
  readonly reject: (err: Error) => void;
}

interface Reply {
  id: number;
  input: Uint8Array;
  output?: Uint8Array;
  crc?: number;
  error?: string;
}

/** Jobs posted ahead to each worker, so it never waits for the main thread between blocks. */
const depth = 2;

class PoolWorker {
  readonly worker: Worker;
  /** jobs posted to this worker, oldest first (a worker answers in order). */
  readonly jobs: Job[] = [];
  constructor(
    onReply: (w: PoolWorker, r: Reply) => void,
    onFail: (w: PoolWorker, e: Error) => void,
  ) {
    this.worker = new Worker(workerSource, { eval: true });
    this.worker.unref();
    this.worker.on('message', (r: Reply) => {
      onReply(this, r);
    });
    this.worker.on('error', (e) => {
      onFail(this, e);
    });
    this.worker.on('exit', (code) => {
      onFail(this, new Error(`gzip worker exited with code ${code}`));
    });
  }
}

/**
 * DeflatePool checksums and raw-deflates blocks on a fixed number of worker
 * threads. Each worker is given up to two blocks ahead so that it goes from
 * one to the next without a round trip to the main thread. Workers are
 * referenced only while they hold a job, so an idle pool never keeps the
 * process alive.
 */
export class DeflatePool {
  readonly size: number;
  #workers: PoolWorker[] = [];
  #queue: Job[] = [];
  #nextId = 0;

  constructor(size: number) {
    this.size = size;
  }

  /**
   * deflate checksums and compresses `input.subarray(0, length)` as one
   * independent raw-deflate block, flushed (or finished when `last`), or
   * with `zstd` as one zstd frame (no checksum). The input's buffer is
   * transferred to a worker (it must be a whole ArrayBuffer) and comes back
   * in the result.
   */
  deflate(
    input: Uint8Array,
    length: number,
    codec: Codec,
    level: number,
    last: boolean,
  ): Promise<DeflateResult> {
    return new Promise<DeflateResult>((resolve, reject) => {
      this.#queue.push({ id: this.#nextId++, input, length, codec, level, last, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#queue.length > 0) {
      let w: PoolWorker | undefined;
      for (const x of this.#workers) if (w === undefined || x.jobs.length < w.jobs.length) w = x;
      if (this.#workers.length < this.size && (w === undefined || w.jobs.length > 0)) {
        w = new PoolWorker(
          (pw, r) => {
            this.#reply(pw, r);
          },
          (pw, e) => {
            this.#fail(pw, e);
          },
        );
        this.#workers.push(w);
      }
      if (w === undefined || w.jobs.length >= depth) return;
      const job = this.#queue.shift();
      if (job === undefined) return;
      if (w.jobs.length === 0) w.worker.ref();
      w.jobs.push(job);
      w.worker.postMessage(
        {
          id: job.id,
          input: job.input,
          length: job.length,
          codec: job.codec,
          level: job.level,
          last: job.last,
        },
        [job.input.buffer as ArrayBuffer],
      );
    }
  }

  #reply(w: PoolWorker, r: Reply): void {
    const job = w.jobs.shift();
    if (w.jobs.length === 0) w.worker.unref();
    if (job?.id === r.id) {
      if (r.output !== undefined && r.crc !== undefined) {
        const output = Buffer.from(r.output.buffer, r.output.byteOffset, r.output.byteLength);
        job.resolve({ output, crc: r.crc, input: r.input });
      } else job.reject(new Error(`gzip worker failed: ${r.error ?? 'unknown error'}`));
    }
    this.#pump();
  }

  #fail(w: PoolWorker, e: Error): void {
    if (!this.#workers.includes(w)) return;
    this.#workers = this.#workers.filter((x) => x !== w);
    for (const job of w.jobs.splice(0)) job.reject(e);
    void w.worker.terminate();
    this.#pump();
  }
}

const pools = new Map<number, DeflatePool>();

/** deflatePool returns the shared pool with `size` workers. */
export function deflatePool(size: number): DeflatePool {
  let p = pools.get(size);
  if (p === undefined) {
    p = new DeflatePool(size);
    pools.set(size, p);
  }
  return p;
}
