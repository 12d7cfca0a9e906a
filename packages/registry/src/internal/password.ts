import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

// Plain CommonJS evaluated from a string, so it runs the same from dist/ and
// from the TypeScript sources under vitest; bcryptjs is loaded by the path
// the main thread resolved.
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const bcrypt = require(workerData.bcrypt);
parentPort.on('message', (job) => {
  let ok = false;
  try { ok = bcrypt.compareSync(job.password, job.hash); } catch { ok = false; }
  parentPort.postMessage({ id: job.id, ok });
});
`;

interface Pending {
  readonly resolve: (ok: boolean) => void;
  readonly reject: (err: Error) => void;
}

/**
 * PasswordVerifier checks bcrypt hashes on worker threads, so that a burst
 * of password checks (50-100 ms each in JavaScript) never stalls the event
 * loop. Workers start on first use and are unreferenced while idle.
 */
export class PasswordVerifier {
  readonly #size: number;
  #workers: { worker: Worker; pending: Map<number, Pending> }[] = [];
  #id = 0;

  constructor(size = Math.max(1, Math.min(4, availableParallelism() - 1))) {
    this.#size = size;
  }

  /** compare resolves whether `password` matches the bcrypt `hash` (false on a malformed hash). */
  compare(password: string, hash: string): Promise<boolean> {
    const slot = this.#slot();
    const id = this.#id++;
    return new Promise<boolean>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.ref();
      slot.worker.postMessage({ id, password, hash });
    });
  }

  #slot(): { worker: Worker; pending: Map<number, Pending> } {
    if (this.#workers.length < this.#size) {
      const pending = new Map<number, Pending>();
      const worker = new Worker(workerSource, {
        eval: true,
        workerData: { bcrypt: createRequire(import.meta.url).resolve('bcryptjs') },
      });
      worker.unref();
      const slot = { worker, pending };
      const fail = (err: Error): void => {
        this.#workers = this.#workers.filter((w) => w !== slot);
        for (const p of pending.values()) p.reject(err);
        pending.clear();
      };
      worker.on('message', (r: { id: number; ok: boolean }) => {
        pending.get(r.id)?.resolve(r.ok);
        pending.delete(r.id);
        if (pending.size === 0) worker.unref();
      });
      worker.on('error', fail);
      worker.on('exit', (code) => {
        fail(new Error(`password worker exited with code ${code}`));
      });
      this.#workers.push(slot);
      return slot;
    }
    // The least busy worker.
    let best = this.#workers[0];
    for (const w of this.#workers)
      if (best === undefined || w.pending.size < best.pending.size) best = w;
    if (best === undefined) throw new Error('no password worker');
    return best;
  }

  /** close stops the workers; checks under way reject. */
  async close(): Promise<void> {
    const workers = this.#workers;
    this.#workers = [];
    await Promise.all(workers.map((w) => w.worker.terminate()));
  }
}
