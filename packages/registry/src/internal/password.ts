import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { evalWorkerExecArgv } from '@lading/core/internal';
import { WindowCounter, type WindowLimit } from '../limits.js';

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
        execArgv: evalWorkerExecArgv(),
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

const bcryptAlphabet = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const bcryptEntry = /^\$2[aby]?\$(\d\d)\$[./A-Za-z0-9]{53}$/;

/**
 * dummyHash is a random bcrypt hash of the cost most entries use, checked
 * for unknown users so that they cost what a known user costs.
 */
function dummyHash(users: Map<string, string>): string {
  const costs = new Map<string, number>();
  for (const h of users.values()) {
    const cost = bcryptEntry.exec(h)?.[1];
    if (cost !== undefined) costs.set(cost, (costs.get(cost) ?? 0) + 1);
  }
  const cost = [...costs].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '10';
  const tail = [...randomBytes(53)].map((b) => bcryptAlphabet.charAt(b % 64)).join('');
  return `$2b$${cost}$${tail}`;
}

/**
 * PasswordChecker checks passwords against htpasswd entries (bcrypt only)
 * on a {@link PasswordVerifier}, in constant time for unknown users, with
 * a cache of successful checks and a failed-login limit per address and
 * per user name.
 */
export class PasswordChecker {
  readonly #users: Map<string, string>;
  // bcrypt is slow in JS and clients send credentials on every request:
  // remember successful checks by a hash of the pair.
  readonly #verified = new Set<string>();
  readonly #dummy: string;
  readonly #failures: WindowCounter | undefined;
  readonly #verifier = new PasswordVerifier();

  /** @param failureLimit default 10 failures per 60 s; false: no limit */
  constructor(users: Map<string, string>, failureLimit: WindowLimit | false | undefined) {
    this.#users = users;
    this.#dummy = dummyHash(users);
    const limit = failureLimit ?? { count: 10, perSeconds: 60 };
    this.#failures = limit === false ? undefined : new WindowCounter(limit);
  }

  /** has tells whether `user` has an entry. */
  has(user: string): boolean {
    return this.#users.has(user);
  }

  /**
   * check verifies a user's password on a worker thread. Unknown users and
   * non-bcrypt entries are checked against a dummy hash of the same cost,
   * so the answer takes as long as for a known user.
   * @throws HttpError 429 TOOMANYREQUESTS past the failure limit
   */
  async check(req: IncomingMessage, user: string, password: string): Promise<boolean> {
    const entry = this.#users.get(user);
    const real = entry !== undefined && bcryptEntry.test(entry); // only bcrypt entries are accepted
    const hash = real ? entry : this.#dummy;
    const key = createHash('sha256').update(`${user}\0${password}\0${hash}`).digest('hex');
    if (real && this.#verified.has(key)) return true;
    const keys = [`addr:${req.socket.remoteAddress ?? ''}`, `user:${user}`];
    this.#failures?.check(keys, 'too many failed logins');
    // Count the attempt as failed until it succeeds, so that concurrent
    // attempts cannot all pass the check before the first one fails.
    this.#failures?.add(keys);
    const ok = (await this.#verifier.compare(password, hash)) && real;
    if (ok) {
      this.#failures?.add(keys, -1);
      if (this.#verified.size > 10_000) this.#verified.clear();
      this.#verified.add(key);
    }
    return ok;
  }

  /** close stops the password workers. */
  async close(): Promise<void> {
    await this.#verifier.close();
  }
}

/** parseHtpasswd reads `user:hash` lines; comments and blank lines are skipped. */
export function parseHtpasswd(text: string): Map<string, string> {
  const users = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    users.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return users;
}

/**
 * htpasswdText is the htpasswd content of an auth config: `inline` when it
 * holds a ':' (the contents), else the file it names, else the file at `path`
 * (none: no users).
 */
export function htpasswdText(inline: string | undefined, path: string | undefined): string {
  if (inline !== undefined) return inline.includes(':') ? inline : readFileSync(inline, 'utf8');
  return path === undefined ? '' : readFileSync(path, 'utf8');
}
