import { Worker } from 'node:worker_threads';
import {
  blockGzipHeader,
  blockGzipSync,
  evalWorkerExecArgv,
  incompressible,
  libdeflateModule,
  storedDeflate,
  storedDeflateSize,
  zstdFrameSync,
  zstdFramer,
} from '@lading/core/internal';

// The worker is plain CommonJS evaluated from a string so that it runs the
// same way from dist/ and from the TypeScript sources under vitest. It
// compresses one block and hands the input back for reuse: a gzip block
// becomes one whole gzip member, raw-deflated by libdeflate (the
// WebAssembly module compiled once by the main thread, in workerData) and
// checksummed; a zstd block becomes one zstd frame. The calls are those of
// RawDeflater and zstdFrameSync in @lading/core, so the bytes are the same
// as blockGzipSync's and zstdFrameSync's; the rule for incompressible
// blocks and the zstd framer (one native context per level, kept) are
// core's own functions, their source spliced in.
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const zlib = require('node:zlib');
let wasm;
let input = 0;
let inputCapacity = 0;
const deflaters = new Map();
// A member's fixed header (gzipMember): the same bytes as blockGzipHeader in @lading/core.
const header = Uint8Array.from(workerData.header);
const incompressible = (${String(incompressible)});
const storedDeflate = (${String(storedDeflate)});
const storedDeflateSize = (${String(storedDeflateSize)});
const zstdFramer = (${String(zstdFramer)});
const framers = new Map();
function zstdFrame(data, level) {
  let frame = framers.get(level);
  if (frame === undefined) {
    frame = zstdFramer(zlib, level);
    framers.set(level, frame);
  }
  return frame(data);
}
function gzipMember(data, level, crc) {
  wasm ??= new WebAssembly.Instance(workerData.libdeflate, {}).exports;
  let d = deflaters.get(level);
  if (d === undefined) {
    d = { compressor: wasm.libdeflate_alloc_compressor(level), output: 0, capacity: 0 };
    if (d.compressor === 0) throw new Error('libdeflate: out of memory');
    deflaters.set(level, d);
  }
  const bound = wasm.libdeflate_deflate_compress_bound(d.compressor, data.length);
  if (data.length > inputCapacity) {
    wasm.free(input);
    input = wasm.malloc(Math.max(1, data.length));
    inputCapacity = data.length;
  }
  if (bound > d.capacity) {
    wasm.free(d.output);
    d.output = wasm.malloc(bound);
    d.capacity = bound;
  }
  if (input === 0 || d.output === 0) throw new Error('libdeflate: out of memory');
  const deflate = (at, length) => {
    new Uint8Array(wasm.memory.buffer, input, length).set(data.subarray(at, at + length));
    const n = wasm.libdeflate_deflate_compress(d.compressor, input, length, d.output, bound);
    if (n === 0) throw new Error('libdeflate: output exceeded its bound');
    return n;
  };
  // The whole member in one buffer (header, deflate stream, CRC-32 and
  // length): one chunk per block downstream, so that a reader of the layer
  // stream is never handed three pieces to join.
  let member;
  let end;
  if (level > 0 && incompressible(data.length, level, deflate)) {
    // Stored blocks, as RawDeflater writes such a block.
    member = new Uint8Array(header.length + storedDeflateSize(data.length) + 8);
    end = storedDeflate(data, member, header.length);
  } else {
    const n = deflate(0, data.length);
    member = new Uint8Array(header.length + n + 8);
    member.set(new Uint8Array(wasm.memory.buffer, d.output, n), header.length);
    end = header.length + n;
  }
  member.set(header, 0);
  const trailer = new DataView(member.buffer, end, 8);
  trailer.setUint32(0, crc, true);
  trailer.setUint32(4, data.length, true);
  return member;
}
parentPort.on('message', (job) => {
  const transfer = [job.input.buffer];
  try {
    const data = job.input.subarray(0, job.length);
    let output;
    if (job.codec === 'zstd') {
      // A fresh buffer the size of the frame: transferred as is.
      output = zstdFrame(data, job.level);
    } else {
      output = gzipMember(data, job.level, zlib.crc32(data));
    }
    transfer.push(output.buffer);
    parentPort.postMessage({ id: job.id, output, input: job.input }, transfer);
  } catch (err) {
    parentPort.postMessage({ id: job.id, input: job.input, error: String(err && err.message || err) }, transfer);
  }
});
`;

/** Codec is what a worker compresses a block with. */
export type Codec = 'gzip' | 'zstd';

/**
 * DeflateResult is one compressed block, whole (a gzip member: header,
 * deflate stream and trailer; or a zstd frame), and the input handed back.
 */
export interface DeflateResult {
  readonly output: Buffer;
  /** input is the block that was given to {@link DeflatePool.deflate}, free again. */
  readonly input: Uint8Array;
}

interface Job {
  readonly id: number;
  readonly input: Uint8Array;
  readonly length: number;
  readonly level: number;
  readonly resolve: (r: DeflateResult) => void;
  readonly reject: (err: Error) => void;
}

interface Reply {
  id: number;
  input: Uint8Array;
  output?: Uint8Array;
  error?: string;
}

/**
 * The blocks a pool compresses on the calling thread while no worker is
 * online: ~40 ms of work at level 1, under a worker's start-up. Not more: a
 * producer that keeps the thread busy would hold off the worker's 'online'
 * event, and with it every block after.
 */
const hereBlocks = 4;

/**
 * Jobs posted ahead to each worker, so it never waits for the main thread
 * between blocks; also the blocks in flight per worker (a third held ~10 MiB
 * more of peak RSS for no speed, 2 workers, 2 GiB).
 */
const depth = 2;

class PoolWorker {
  readonly worker: Worker;
  /** jobs posted to this worker, oldest first (a worker answers in order). */
  readonly jobs: Job[] = [];
  /** answered says the worker has finished a job: it is up and compressing. */
  answered = false;
  /** online says the worker's thread is up and can take a job. */
  online = false;
  constructor(
    onReply: (w: PoolWorker, r: Reply) => void,
    onFail: (w: PoolWorker, e: Error) => void,
  ) {
    this.worker = new Worker(workerSource, {
      eval: true,
      execArgv: evalWorkerExecArgv(),
      workerData: { libdeflate: libdeflateModule(), header: [...blockGzipHeader] },
    });
    this.worker.once('online', () => {
      this.online = true;
    });
    this.worker.on('message', (r: Reply) => {
      this.answered = true;
      onReply(this, r);
    });
    this.worker.on('error', (e) => {
      onFail(this, e);
    });
    this.worker.on('exit', (code) => {
      onFail(this, new Error(`gzip worker exited with code ${code}`));
    });
    // Last: a 'message' listener added after unref() refs the worker again
    // (a worker started for blocks that were then all compressed here kept
    // the process alive).
    this.worker.unref();
  }
}

/**
 * DeflatePool checksums and compresses blocks on up to `size` worker
 * threads. Each worker is given up to two blocks ahead so that it goes from
 * one to the next without a round trip to the main thread.
 *
 * Workers start as the work needs them: the first with the first block, each
 * further one only while a block waits with every running worker (all of
 * them answered once, so up) holding two. A producer slower than the workers
 * it has, such as a main thread busy hashing and sending, never starts the
 * rest, and each worker not started is ~13 MiB of peak RSS saved (a Node
 * worker, libdeflate's memory, its blocks). {@link window} tells a producer
 * how many blocks to keep in flight so that this can happen: enough for the
 * running workers and one waiting.
 *
 * The pool's first blocks (up to four, while no worker is online) are
 * compressed on the calling thread, with the same bytes (core's
 * blockGzipSync and zstdFrameSync make the workers' calls): a worker takes
 * ~75 ms to start (Node 20, here), which a small layer would otherwise wait
 * for. The first block starts no worker — a layer of one block never needs
 * one — and the second starts the first.
 *
 * Workers are referenced only while they hold a job, so an idle pool never
 * keeps the process alive.
 */
export class DeflatePool {
  readonly size: number;
  readonly codec: Codec;
  #workers: PoolWorker[] = [];
  #queue: Job[] = [];
  #nextId = 0;
  /** #here is how many blocks this thread has compressed itself. */
  #here = 0;

  /** A pool compresses with one codec: its workers start as that codec needs. */
  constructor(size: number, codec: Codec) {
    this.size = size;
    this.codec = codec;
  }

  /** started is how many workers are running. */
  get started(): number {
    return this.#workers.length;
  }

  /**
   * window is how many blocks a producer should keep in flight: two per
   * running worker and one more, which waits and so asks for another
   * worker; two per worker once all have started.
   */
  get window(): number {
    return Math.min(depth * this.size, depth * this.#workers.length + 1);
  }

  /**
   * deflate compresses `input.subarray(0, length)` as one gzip member
   * (libdeflate's raw deflate stream between the fixed header and its
   * CRC-32 and length), or in a zstd pool as one zstd frame. The input's
   * buffer is transferred to a worker (it must be a whole ArrayBuffer) and
   * comes back in the result.
   */
  deflate(input: Uint8Array, length: number, level: number): Promise<DeflateResult> {
    return new Promise<DeflateResult>((resolve, reject) => {
      this.#queue.push({ id: this.#nextId++, input, length, level, resolve, reject });
      this.#pump();
    });
  }

  /** #wantsWorker says whether a block waits that no running worker can take soon. */
  #wantsWorker(least: PoolWorker | undefined): boolean {
    if (this.#workers.length >= this.size) return false;
    if (least === undefined) return true;
    return least.jobs.length >= depth && this.#workers.every((w) => w.answered);
  }

  #pump(): void {
    while (this.#queue.length > 0) {
      if (this.#here < hereBlocks && this.#workers.every((x) => !x.online)) {
        this.#compressHere();
        continue;
      }
      let w: PoolWorker | undefined;
      for (const x of this.#workers) if (w === undefined || x.jobs.length < w.jobs.length) w = x;
      if (this.#wantsWorker(w)) {
        w = this.#startWorker();
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
          codec: this.codec,
          level: job.level,
        },
        [job.input.buffer as ArrayBuffer],
      );
    }
  }

  /**
   * #compressHere compresses the next block on this thread (no worker is
   * online yet) and, from the second block on, starts the first worker.
   */
  #compressHere(): void {
    const job = this.#queue.shift();
    if (job === undefined) return;
    if (this.#workers.length === 0 && this.#here > 0) this.#workers.push(this.#startWorker());
    this.#here++;
    try {
      const block = job.input.subarray(0, job.length);
      const output =
        this.codec === 'zstd' ? zstdFrameSync(block, job.level) : blockGzipSync(block, job.level);
      job.resolve({ output, input: job.input });
    } catch (err) {
      job.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #startWorker(): PoolWorker {
    return new PoolWorker(
      (pw, r) => {
        this.#reply(pw, r);
      },
      (pw, e) => {
        this.#fail(pw, e);
      },
    );
  }

  #reply(w: PoolWorker, r: Reply): void {
    const job = w.jobs.shift();
    if (w.jobs.length === 0) w.worker.unref();
    if (job?.id === r.id) {
      if (r.output !== undefined) {
        const output = Buffer.from(r.output.buffer, r.output.byteOffset, r.output.byteLength);
        job.resolve({ output, input: r.input });
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

const pools = new Map<string, DeflatePool>();

/** deflatePool returns the shared pool with `size` workers for `codec`. */
export function deflatePool(size: number, codec: Codec): DeflatePool {
  const key = `${codec}:${size}`;
  let p = pools.get(key);
  if (p === undefined) {
    p = new DeflatePool(size, codec);
    pools.set(key, p);
  }
  return p;
}
