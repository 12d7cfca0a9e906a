import { Worker } from 'node:worker_threads';

// The worker is plain CommonJS evaluated from a string so that it runs the
// same way from dist/ and from the TypeScript sources under vitest.
const workerSource = `
const { parentPort } = require('node:worker_threads');
const zlib = require('node:zlib');
parentPort.on('message', (job) => {
  try {
    const out = zlib.deflateRawSync(job.input, {
      level: job.level,
      finishFlush: job.last ? zlib.constants.Z_FINISH : zlib.constants.Z_FULL_FLUSH,
    });
    // deflateRawSync may hand back a view on a shared pool; copy into an
    // exclusive buffer so it can be transferred.
    const copy = new Uint8Array(out.length);
    copy.set(out);
    parentPort.postMessage({ id: job.id, output: copy }, [copy.buffer]);
  } catch (err) {
    parentPort.postMessage({ id: job.id, error: String(err && err.message || err) });
  }
});
`;

interface Job {
  readonly id: number;
  readonly input: Uint8Array;
  readonly level: number;
  readonly last: boolean;
  readonly resolve: (out: Buffer) => void;
  readonly reject: (err: Error) => void;
}

interface Reply {
  id: number;
  output?: Uint8Array;
  error?: string;
}

class PoolWorker {
  readonly worker: Worker;
  job: Job | undefined;
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
 * DeflatePool runs raw-deflate jobs on a fixed number of worker threads.
 * Workers are referenced only while they hold a job, so an idle pool never
 * keeps the process alive.
 */
export class DeflatePool {
  readonly size: number;
  #workers: PoolWorker[] = [];
  #idle: PoolWorker[] = [];
  #queue: Job[] = [];
  #nextId = 0;

  constructor(size: number) {
    this.size = size;
  }

  /** deflate compresses `input` as one independent raw-deflate block. */
  deflate(input: Uint8Array, level: number, last: boolean): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      this.#queue.push({ id: this.#nextId++, input, level, last, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#queue.length > 0) {
      let w = this.#idle.pop();
      if (w === undefined && this.#workers.length < this.size) {
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
      if (w === undefined) return;
      const job = this.#queue.shift();
      if (job === undefined) {
        this.#idle.push(w);
        return;
      }
      w.job = job;
      w.worker.ref();
      // Transfer when the view covers its whole buffer; otherwise it is copied.
      const whole =
        job.input.byteOffset === 0 && job.input.byteLength === job.input.buffer.byteLength;
      w.worker.postMessage(
        { id: job.id, input: job.input, level: job.level, last: job.last },
        whole && job.input.buffer instanceof ArrayBuffer ? [job.input.buffer] : [],
      );
    }
  }

  #reply(w: PoolWorker, r: Reply): void {
    const job = w.job;
    w.job = undefined;
    w.worker.unref();
    this.#idle.push(w);
    if (job?.id === r.id) {
      if (r.output !== undefined) {
        job.resolve(Buffer.from(r.output.buffer, r.output.byteOffset, r.output.byteLength));
      } else job.reject(new Error(`gzip worker failed: ${r.error ?? 'unknown error'}`));
    }
    this.#pump();
  }

  #fail(w: PoolWorker, e: Error): void {
    this.#workers = this.#workers.filter((x) => x !== w);
    this.#idle = this.#idle.filter((x) => x !== w);
    const job = w.job;
    w.job = undefined;
    job?.reject(e);
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
