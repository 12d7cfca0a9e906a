import { createHash, type Hash } from 'node:crypto';
import type { DigestAlgorithm } from '@lading/core';
import { deferred } from '@lading/core/internal';
import { HttpError, SpecErrorCode } from './errors.js';
import { HashCounter } from './internal/http.js';
import type { UploadStore } from './storage/types.js';

/** UploadLimits bound the upload sessions a registry keeps open. */
export interface UploadLimits {
  /**
   * timeout cancels sessions idle for this many seconds (default 86400; 0
   * keeps them forever). A timer checks every timeout/4 (at most every
   * minute), also sessions the store lists from before a restart.
   */
  readonly timeout?: number | undefined;
  /** maxSize caps the bytes of one session (default 16 GiB); more gets 413 and drops the session. */
  readonly maxSize?: number | undefined;
  /** maxSessions caps open sessions (default 1024); more get 429 TOOMANYREQUESTS. */
  readonly maxSessions?: number | undefined;
  /**
   * maxSessionsPerClient caps open sessions per client: the user when
   * authenticated, else the address (default 64).
   */
  readonly maxSessionsPerClient?: number | undefined;
  /**
   * maxBytes caps the bytes all open sessions hold together (default: no
   * cap). A body that would pass it gets 429 and its session is dropped.
   */
  readonly maxBytes?: number | undefined;
}

/**
 * SessionHash is the incremental hash of a session's bytes, valid while it
 * covers exactly the first `size` bytes the store holds.
 */
export interface SessionHash {
  readonly hash: Hash;
  readonly algorithm: DigestAlgorithm;
  size: number;
}

interface Tracked {
  at: number;
  owner: string | undefined;
  size: number;
}

/**
 * UploadSessions is the registry's state of open upload sessions: when
 * each was last touched and by whom (for the count limits and the idle
 * expiry timer), its incremental hash, and the lock that keeps a second
 * request from writing it at the same time.
 */
export class UploadSessions {
  readonly timeoutMs: number;
  readonly maxSize: number;
  readonly #maxSessions: number;
  readonly #maxPerClient: number;
  readonly #maxBytes: number;
  #held = 0;
  /** #pending counts the slots admit() reserved for sessions being created. */
  #pending = 0;
  readonly #tracked = new Map<string, Tracked>();
  readonly #perOwner = new Map<string, number>();
  readonly #uploads: UploadStore | undefined;
  readonly #hashes = new Map<string, SessionHash>();
  /** #busy maps a session a request is writing to that request's end and a way to stop it. */
  readonly #busy = new Map<
    string,
    { readonly done: Promise<unknown>; readonly stop: () => void }
  >();
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;
  #closed = false;

  constructor(limits: UploadLimits, uploads: UploadStore | undefined) {
    const num = (v: number | undefined, d: number, name: string): number => {
      const n = v ?? d;
      if (!Number.isFinite(n) || n < 0) throw new RangeError(`${name} must be a number ≥ 0`);
      return n;
    };
    this.timeoutMs = num(limits.timeout, 86_400, 'uploadTimeout') * 1000;
    const max = (v: number): number => (v === 0 ? Number.POSITIVE_INFINITY : v);
    this.maxSize = max(num(limits.maxSize, 16 * 1024 ** 3, 'maxUploadSize'));
    this.#maxSessions = max(num(limits.maxSessions, 1024, 'maxUploadSessions'));
    this.#maxPerClient = max(num(limits.maxSessionsPerClient, 64, 'maxUploadSessionsPerClient'));
    this.#maxBytes = max(num(limits.maxBytes, 0, 'maxUploadBytes'));
    this.#uploads = uploads;
  }

  /** start arms the expiry timer and runs a first sweep (sessions left from before a restart). */
  start(): void {
    if (this.#uploads === undefined || this.timeoutMs <= 0 || this.#closed) return;
    const every = Math.max(50, Math.min(60_000, this.timeoutMs / 4));
    this.#timer = setInterval(() => {
      void this.sweep();
    }, every).unref();
    void this.sweep();
  }

  /** close stops the timer and waits for a sweep under way. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#sweeping;
  }

  /**
   * admit checks that `owner` may open one more session and reserves its
   * slot (in the total and in the owner's count) until {@link UploadSessions.opened}
   * takes it over or the returned function releases it.
   * @throws HttpError 429 TOOMANYREQUESTS over maxSessions or maxSessionsPerClient
   */
  admit(owner: string): () => void {
    const full = this.#tracked.size + this.#pending >= this.#maxSessions;
    if (full || (this.#perOwner.get(owner) ?? 0) >= this.#maxPerClient) {
      const retry = this.timeoutMs > 0 ? Math.min(3600, Math.ceil(this.timeoutMs / 4000)) : 60;
      throw new HttpError(
        429,
        SpecErrorCode.TooManyRequests,
        full ? 'too many open upload sessions' : 'too many open upload sessions for this client',
        undefined,
        { 'Retry-After': String(Math.max(1, retry)) },
      );
    }
    this.#pending++;
    this.#perOwner.set(owner, (this.#perOwner.get(owner) ?? 0) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#pending--;
      this.#release(owner);
    };
  }

  /** opened records a new session of `owner`, taking over the slot `release` (from admit) holds. */
  opened(id: string, owner: string | undefined, release?: () => void): void {
    release?.();
    this.#track(id, Date.now(), owner, 0);
  }

  /**
   * touch records activity on a session now `size` bytes long (one found
   * after a restart is tracked from now on).
   */
  touch(id: string, size: number): void {
    const t = this.#tracked.get(id);
    if (t === undefined) this.#track(id, Date.now(), undefined, size);
    else {
      t.at = Date.now();
      this.#resize(t, size);
    }
  }

  /**
   * grow counts `n` more bytes arriving in session `id`, and answers false
   * (counting nothing) when they would pass maxBytes.
   */
  grow(id: string, n: number): boolean {
    if (this.#held + n > this.#maxBytes) return false;
    const t = this.#tracked.get(id);
    if (t !== undefined) this.#resize(t, t.size + n);
    return true;
  }

  /**
   * counter is the pass-through for a body appended to session `id` at
   * `offset`: it hashes into `hash` and stops the body past `expected`
   * bytes (400 SIZE_INVALID), past maxSize (413 SIZE_INVALID) or past the
   * byte budget (429 TOOMANYREQUESTS). See {@link UploadSessions.dropsSession}.
   * @throws HttpError 413 at once when `expected` alone passes maxSize
   */
  counter(id: string, offset: number, expected: number | undefined, hash?: Hash): HashCounter {
    const room = this.maxSize - offset;
    const tooLarge = (): HttpError =>
      new HttpError(413, SpecErrorCode.SizeInvalid, 'upload larger than this registry takes', {
        limit: this.maxSize,
      });
    if (expected !== undefined && expected > room) throw tooLarge();
    return new HashCounter(hash, expected ?? room, {
      overLimit: expected === undefined ? tooLarge : undefined,
      admit: (n) =>
        this.grow(id, n)
          ? undefined
          : new HttpError(
              429,
              SpecErrorCode.TooManyRequests,
              'open uploads hold all the bytes this registry takes',
              undefined,
              { 'Retry-After': '60' },
            ),
    });
  }

  /** dropsSession tells whether `err` is a limit of {@link UploadSessions.counter} after which the session is cancelled. */
  dropsSession(err: unknown): boolean {
    return err instanceof HttpError && (err.status === 413 || err.status === 429);
  }

  #resize(t: Tracked, size: number): void {
    this.#held += size - t.size;
    t.size = size;
  }

  /** forget stops tracking a session that was committed or cancelled, and drops its hash. */
  forget(id: string): void {
    this.#hashes.delete(id);
    this.#untrack(id);
  }

  /** newHash starts the hash of a session with no bytes yet. */
  newHash(id: string, algorithm: DigestAlgorithm): SessionHash {
    const state: SessionHash = { hash: createHash(algorithm), algorithm, size: 0 };
    this.#hashes.set(id, state);
    return state;
  }

  /** hash answers the session's incremental hash, if it still has one. */
  hash(id: string): SessionHash | undefined {
    return this.#hashes.get(id);
  }

  /** dropHash forgets the session's hash: its bytes will be re-read before a commit. */
  dropHash(id: string): void {
    this.#hashes.delete(id);
  }

  /** busy tells whether a request is writing the session now (it is then never expired). */
  busy(id: string): boolean {
    return this.#busy.has(id);
  }

  /**
   * lock runs `fn` as the only writer of session `id`.
   * @throws HttpError 400 BLOB_UPLOAD_INVALID when another request is writing it
   */
  async lock<T>(id: string, fn: () => Promise<T>, stop: () => void = () => undefined): Promise<T> {
    if (this.#busy.has(id)) {
      throw new HttpError(
        400,
        SpecErrorCode.BlobUploadInvalid,
        'another request is writing this upload',
        {
          uuid: id,
        },
      );
    }
    const done = deferred<undefined>();
    this.#busy.set(id, { done: done.promise, stop });
    try {
      return await fn();
    } finally {
      this.#busy.delete(id);
      done.resolve(undefined);
    }
  }

  /**
   * stopWriter stops the request writing session `id`, if one is (a DELETE
   * that follows a client's cut-off PATCH or PUT finds the registry still
   * reading what was sent), and waits up to `ms` for it to let go.
   * @returns whether no request is writing the session now
   */
  async stopWriter(id: string, ms = 5000): Promise<boolean> {
    const writer = this.#busy.get(id);
    if (writer === undefined) return true;
    writer.stop();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      writer.done,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ms);
      }),
    ]);
    clearTimeout(timer);
    return !this.#busy.has(id);
  }

  #untrack(id: string): void {
    const t = this.#tracked.get(id);
    if (t === undefined) return;
    this.#tracked.delete(id);
    this.#held -= t.size;
    if (t.owner !== undefined) this.#release(t.owner);
  }

  #release(owner: string): void {
    const left = (this.#perOwner.get(owner) ?? 1) - 1;
    if (left <= 0) this.#perOwner.delete(owner);
    else this.#perOwner.set(owner, left);
  }

  #track(id: string, at: number, owner: string | undefined, size: number): void {
    this.#untrack(id);
    this.#tracked.set(id, { at, owner, size });
    this.#held += size;
    if (owner !== undefined) this.#perOwner.set(owner, (this.#perOwner.get(owner) ?? 0) + 1);
  }

  /** sweep cancels every session idle longer than the timeout; one sweep runs at a time. */
  sweep(): Promise<void> {
    this.#sweeping ??= this.#sweep().finally(() => {
      this.#sweeping = undefined;
    });
    return this.#sweeping;
  }

  async #sweep(): Promise<void> {
    const uploads = this.#uploads;
    if (uploads === undefined || this.timeoutMs <= 0) return;
    const deadline = Date.now() - this.timeoutMs;
    const stale: string[] = [];
    for (const [id, t] of this.#tracked) if (t.at < deadline) stale.push(id);
    if (uploads.list !== undefined) {
      try {
        for await (const info of uploads.list()) {
          if (this.#closed) return;
          const known = this.#tracked.get(info.id);
          const at = Math.max(known?.at ?? 0, info.updatedAt ?? Date.now());
          if (known === undefined) this.#track(info.id, at, undefined, info.size);
          else known.at = at;
          if (at < deadline && !stale.includes(info.id)) stale.push(info.id);
        }
      } catch {
        // A store that cannot list now is retried on the next tick.
      }
    }
    for (const id of stale) {
      if (this.#closed) return;
      const t = this.#tracked.get(id);
      if (t === undefined || t.at >= deadline || this.#busy.has(id)) continue;
      this.forget(id);
      await uploads.cancel(id).catch(() => undefined);
    }
  }
}
