import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { digestAlgorithm, digestHex, ErrorCode, LadingError, type Digest } from '@lading/core';
import { isUploadId, unknownUpload } from '../names.js';
import { isMissing, type Bucket } from './s3-bucket.js';
import { Multipart, type Part } from './s3-multipart.js';
import type {
  AppendOptions,
  StorageOptions,
  UploadInfo,
  UploadSession,
  UploadStatus,
  UploadStore,
} from './types.js';

const maxParts = 10_000;
const maxStateObject = 2 * 1024 * 1024;
/** maxOwned caps the sessions whose last state this process remembers writing or reading. */
const maxOwned = 10_000;

/** SweepOptions configure {@link S3UploadStore.sweep}. */
export interface SweepOptions extends StorageOptions {
  /** olderThan is the age in seconds after which an unowned multipart upload is aborted (default 86400; 0: any age). */
  readonly olderThan?: number | undefined;
}

/**
 * SessionState is an upload session as stored in `uploads/<id>/state`, the
 * object whose rewrite commits an append. Bytes `[0, tailStart)` are the
 * parts of multipart upload `multipart` (or, once `staged`, the object
 * `uploads/<id>/<data>`), bytes `[tailStart, size)` the first bytes of the
 * object `uploads/<id>/<tail>`. The tail and data objects have names no
 * other write uses (a tail is written once, by the append whose state
 * names it; a data object only by completing its own multipart upload), so
 * what a state names never changes under it.
 */
interface SessionState {
  v: 1;
  repository: string;
  createdAt: number;
  updatedAt: number;
  size: number;
  multipart?: string | undefined;
  /** parts are `[etag, size]` of parts 1..n. */
  parts: Part[];
  staged?: boolean | undefined;
  /** gen is new (random) in every state write that changes what the state names. */
  gen?: string | undefined;
  /** tail names the tail object; states written before it existed use `tail-<tailStart>`. */
  tail?: string | undefined;
  /** data names the object the multipart upload completes into (older states: `data`). */
  data?: string | undefined;
}

function tailStart(s: SessionState): number {
  if (s.staged === true) return s.size;
  return s.parts.reduce((n, [, size]) => n + size, 0);
}

/** S3UploadStoreOptions configure an {@link S3UploadStore}. */
export interface S3UploadStoreOptions {
  readonly partSize: number;
  readonly partConcurrency?: number | undefined;
  readonly maxCopySize?: number | undefined;
}

/**
 * S3UploadStore keeps every upload session in the bucket: a state object,
 * an S3 multipart upload of the full parts and a tail object with the bytes
 * that do not fill a part yet (S3 parts must be 5 MiB but the last). Any
 * process over the same bucket can continue any session.
 */
export class S3UploadStore implements UploadStore {
  readonly #bucket: Bucket;
  readonly #partSize: number;
  readonly #partConcurrency: number;
  readonly #mp: Multipart;

  constructor(bucket: Bucket, options: S3UploadStoreOptions) {
    this.#bucket = bucket;
    this.#partSize = options.partSize;
    this.#partConcurrency = Math.max(1, options.partConcurrency ?? 2);
    this.#mp = new Multipart(bucket, options.maxCopySize ?? 5 * 1024 ** 3);
  }

  /**
   * #owned maps a session to the `gen` of the state this instance last
   * wrote through an unbroken chain of its own appends (or last read back
   * with read()): while the stored state still has that gen, its bytes are
   * exactly the ones that went through this instance. See commit().
   */
  readonly #owned = new Map<string, string>();

  #dataPath(id: string, s: SessionState): string {
    return `uploads/${id}/${s.data ?? 'data'}`;
  }

  #tailPath(id: string, s: SessionState): string {
    return `uploads/${id}/${s.tail ?? `tail-${String(tailStart(s))}`}`;
  }

  /** #owns tells whether the state `s` of session `id` is one this instance owns (see #owned). */
  #owns(id: string, s: SessionState): boolean {
    return s.size === 0 || (s.gen !== undefined && this.#owned.get(id) === s.gen);
  }

  #own(id: string, gen: string | undefined): void {
    this.#owned.delete(id);
    if (gen === undefined) return;
    this.#owned.set(id, gen);
    if (this.#owned.size > maxOwned) {
      const oldest = this.#owned.keys().next();
      if (oldest.done !== true) this.#owned.delete(oldest.value);
    }
  }

  async #read(id: string, signal?: AbortSignal): Promise<SessionState | undefined> {
    if (!isUploadId(id)) return undefined;
    const bytes = await this.#bucket.bytes(`uploads/${id}/state`, maxStateObject, signal);
    return bytes === undefined ? undefined : (JSON.parse(bytes.toString('utf8')) as SessionState);
  }

  async #state(id: string, signal?: AbortSignal): Promise<SessionState> {
    const s = await this.#read(id, signal);
    if (s === undefined) throw unknownUpload(id);
    return s;
  }

  async #write(id: string, s: SessionState, signal?: AbortSignal): Promise<void> {
    await this.#bucket.put(`uploads/${id}/state`, JSON.stringify(s), undefined, signal);
  }

  async create(repository: string, options?: StorageOptions): Promise<UploadSession> {
    const id = randomUUID();
    const now = Date.now();
    const gen = randomUUID();
    await this.#write(
      id,
      { v: 1, repository, createdAt: now, updatedAt: now, size: 0, parts: [], gen },
      options?.signal,
    );
    this.#own(id, gen);
    return { id };
  }

  async status(id: string, options?: StorageOptions): Promise<UploadStatus | undefined> {
    const s = await this.#read(id, options?.signal);
    return s === undefined
      ? undefined
      : { repository: s.repository, size: s.size, updatedAt: s.updatedAt };
  }

  async *list(options?: StorageOptions): AsyncIterable<UploadInfo> {
    for await (const page of this.#bucket.list('uploads/', true, options?.signal)) {
      for (const p of page.prefixes) {
        const id = p.slice(0, -1);
        const s = await this.#read(id, options?.signal);
        if (s !== undefined) {
          yield { id, repository: s.repository, size: s.size, updatedAt: s.updatedAt };
        }
      }
    }
  }

  async append(
    id: string,
    offset: number,
    data: Readable,
    options?: AppendOptions,
  ): Promise<number> {
    const signal = options?.signal;
    let s: SessionState;
    const buffered: Buffer[] = [];
    let bufferedSize = 0;
    let chained: boolean;
    try {
      s = await this.#state(id, signal);
      if (s.size !== offset) {
        throw new LadingError(
          ErrorCode.Conflict,
          `upload ${id} is at ${String(s.size)}, not ${String(offset)}`,
        );
      }
      chained = this.#owns(id, s);
      if (s.staged === true) s = await this.#unstage(id, s, chained, signal);
      // The tail (less than a part) starts the next part.
      if (s.size > tailStart(s)) {
        const tail = await this.#tail(id, s, signal);
        buffered.push(tail);
        bufferedSize = tail.length;
      }
    } catch (err) {
      data.destroy();
      throw err;
    }
    const base = s;
    const start = tailStart(s);
    const parts = [...s.parts];
    let multipart = s.multipart;
    let dataName = s.data;
    let received = 0;
    // Set when the session is cancelled or rewritten by someone else while
    // this append runs: the rest of the body is read and dropped, nothing is recorded.
    let lost: LadingError | undefined;
    const refresher = this.#refresher(id, base, options?.refreshEvery, (err) => {
      lost ??= err;
    });
    // Up to partConcurrency parts upload while the next one fills.
    const inFlight: Promise<void>[] = [];
    const flush = async (): Promise<void> => {
      const whole = Buffer.concat(buffered, bufferedSize);
      const part = whole.subarray(0, this.#partSize);
      const rest = whole.subarray(this.#partSize);
      buffered.length = 0;
      if (rest.length > 0) buffered.push(rest);
      bufferedSize = rest.length;
      while (inFlight.length >= this.#partConcurrency) await inFlight.shift();
      if (parts.length >= maxParts) {
        throw new LadingError(
          ErrorCode.InvalidArgument,
          `upload ${id} exceeds ${String(maxParts)} parts`,
        );
      }
      if (multipart === undefined) {
        // A data object of its own: no other multipart upload completes into it.
        dataName = `data-${randomUUID()}`;
        multipart = await this.#mp.create(`uploads/${id}/${dataName}`, signal);
      }
      const number = parts.length + 1;
      parts.push(['', part.length]);
      const uploadId = multipart;
      const uploading = this.#mp
        .uploadPart(`uploads/${id}/${dataName ?? 'data'}`, uploadId, number, part, signal)
        .then((etag) => {
          parts[number - 1] = [etag, part.length];
        });
      // Reported when awaited below; never left unhandled meanwhile.
      uploading.catch(() => undefined);
      inFlight.push(uploading);
    };
    let failure: Error | undefined;
    try {
      for await (const chunk of data as AsyncIterable<Buffer>) {
        if (lost !== undefined) continue;
        buffered.push(chunk);
        bufferedSize += chunk.length;
        received += chunk.length;
        while (bufferedSize >= this.#partSize) await flush();
      }
    } catch (err) {
      failure = err instanceof Error ? err : new Error(String(err));
      data.destroy();
    }
    await refresher.stop();
    const next: SessionState = {
      ...base,
      multipart,
      data: dataName,
      parts,
      size: 0,
      updatedAt: Date.now(),
      gen: randomUUID(),
      tail: undefined,
    };
    const newStart = parts.reduce((n, [, size]) => n + size, 0);
    const tail = Buffer.concat(buffered, bufferedSize);
    next.size = newStart + tail.length;
    if (tail.length > 0) next.tail = `tail-${String(newStart)}-${next.gen ?? ''}`;
    const discard = async (): Promise<void> => {
      await Promise.allSettled(inFlight);
      if (next.tail !== undefined) await this.#bucket.delete(this.#tailPath(id, next), signal);
      if (multipart !== undefined && base.multipart === undefined) {
        await this.#mp.abort(this.#dataPath(id, next), multipart, signal);
      }
    };
    if (lost !== undefined) {
      await discard().catch(() => undefined);
      throw lost;
    }
    try {
      await Promise.all(inFlight);
    } catch (err) {
      // A part did not make it: nothing of this request is kept.
      throw failure ?? err;
    }
    if (received === 0) {
      if (failure !== undefined) throw failure;
      return s.size;
    }
    // Keep what arrived, even from a body that failed midway (status() tells how much).
    let changed: LadingError | undefined;
    try {
      if (next.tail !== undefined) {
        await this.#bucket.put(this.#tailPath(id, next), tail, undefined, signal);
      }
      // Never bring back a session cancelled meanwhile, nor overwrite an
      // append another process recorded meanwhile.
      changed = await this.#changed(id, base, signal);
    } catch (err) {
      throw failure ?? err;
    }
    if (changed !== undefined) {
      await discard().catch(() => undefined);
      throw changed;
    }
    try {
      await this.#write(id, next, signal);
      this.#own(id, chained ? next.gen : undefined);
      if (s.size > start) await this.#bucket.delete(this.#tailPath(id, s), signal);
      if (failure !== undefined) throw failure;
      return next.size;
    } catch (err) {
      throw failure ?? err;
    }
  }

  /**
   * #changed answers NOT_FOUND when session `id` is gone, CONFLICT when its
   * state is no longer `base`, and undefined when it still is.
   */
  async #changed(
    id: string,
    base: SessionState,
    signal?: AbortSignal,
  ): Promise<LadingError | undefined> {
    const now = await this.#read(id, signal);
    if (now === undefined) return unknownUpload(id);
    if (now.gen !== base.gen || now.size !== base.size) {
      return new LadingError(
        ErrorCode.Conflict,
        `upload ${id} was written by another request meanwhile`,
      );
    }
    return undefined;
  }

  /**
   * #refresher rewrites the `updatedAt` of session `id` every `every` ms
   * while an append that started from `base` runs, so that the idle expiry
   * of other processes does not take the session; it reports through
   * `onLost` a session gone or rewritten meanwhile.
   */
  #refresher(
    id: string,
    base: SessionState,
    every: number | undefined,
    onLost: (err: LadingError) => void,
  ): { stop(): Promise<void> } {
    if (every === undefined || !(every > 0)) return { stop: () => Promise.resolve() };
    let running: Promise<void> = Promise.resolve();
    let stopped = false;
    const timer = setInterval(
      () => {
        running = running.then(async () => {
          if (stopped) return;
          try {
            const changed = await this.#changed(id, base);
            if (changed !== undefined) onLost(changed);
            else await this.#write(id, { ...base, updatedAt: Date.now() });
          } catch {
            // The next tick, or the append's own state write, tries again.
          }
        });
      },
      Math.max(10, every),
    );
    timer.unref();
    return {
      stop: async () => {
        stopped = true;
        clearInterval(timer);
        await running;
      },
    };
  }

  /** tail reads the session's stored tail: bytes [tailStart, size). */
  async #tail(id: string, s: SessionState, signal?: AbortSignal): Promise<Buffer> {
    const start = tailStart(s);
    if (s.size === start) return Buffer.alloc(0);
    const tail = await this.#bucket.bytes(this.#tailPath(id, s), this.#partSize, signal, {
      start: 0,
      end: s.size - start - 1,
    });
    if (tail?.length !== s.size - start) {
      throw new LadingError(ErrorCode.Io, `upload ${id}: its stored tail is missing`);
    }
    return tail;
  }

  /**
   * stage completes the multipart upload (the tail as its last part) into
   * its data object, so the bytes can be read back and copied. The staged
   * state stays owned only when `s` was and the completion was this call's
   * own: a multipart upload someone else completed may hold other parts.
   */
  async #stage(id: string, s: SessionState, signal?: AbortSignal): Promise<SessionState> {
    const owned = this.#owns(id, s);
    const data = this.#dataPath(id, s);
    const start = tailStart(s);
    const parts = [...s.parts];
    if (s.multipart === undefined) throw new LadingError(ErrorCode.Io, `upload ${id} has no parts`);
    if (s.size > start) {
      const tail = await this.#tail(id, s, signal);
      parts.push([
        await this.#mp.uploadPart(data, s.multipart, parts.length + 1, tail, signal),
        tail.length,
      ]);
    }
    let completed = true;
    try {
      await this.#mp.complete(data, s.multipart, parts, signal);
    } catch (err) {
      // Another process (or an earlier, interrupted call) completed it already.
      if (!isMissing(err) || (await this.#bucket.head(data, signal))?.size !== s.size) {
        throw this.#bucket.fail('COMPLETE-MULTIPART', data, err);
      }
      completed = false;
    }
    const next: SessionState = {
      ...s,
      multipart: undefined,
      parts: [],
      staged: true,
      tail: undefined,
      gen: randomUUID(),
    };
    await this.#write(id, next, signal);
    this.#own(id, owned && completed ? next.gen : undefined);
    if (s.size > start) await this.#bucket.delete(this.#tailPath(id, s), signal);
    return next;
  }

  /** unstage reopens a staged session for more bytes: a new multipart upload starting with a copy of the data. */
  async #unstage(
    id: string,
    s: SessionState,
    owned: boolean,
    signal?: AbortSignal,
  ): Promise<SessionState> {
    const dataName = `data-${randomUUID()}`;
    const to = `uploads/${id}/${dataName}`;
    const uploadId = await this.#mp.create(to, signal);
    const parts = await this.#mp.copyParts(this.#dataPath(id, s), to, uploadId, s.size, signal);
    const next: SessionState = {
      ...s,
      multipart: uploadId,
      data: dataName,
      parts,
      staged: undefined,
      tail: undefined,
      gen: randomUUID(),
    };
    await this.#write(id, next, signal);
    this.#own(id, owned ? next.gen : undefined);
    await this.#bucket.delete(this.#dataPath(id, s), signal);
    return next;
  }

  /**
   * read streams the session's bytes; the state they come from is then
   * owned by this instance (see commit()), as the caller verifies them.
   */
  async read(id: string, options?: StorageOptions): Promise<Readable> {
    const signal = options?.signal;
    let s = await this.#state(id, signal);
    if (s.size === 0) return Readable.from([]);
    if (s.gen === undefined) {
      // A state written before generations existed gets one, to be owned.
      s = { ...s, gen: randomUUID() };
      await this.#write(id, s, signal);
    }
    let path: string;
    if (s.staged !== true && s.parts.length === 0) {
      path = this.#tailPath(id, s);
    } else {
      if (s.staged !== true) s = await this.#stage(id, s, signal);
      path = this.#dataPath(id, s);
    }
    const body = await this.#bucket.stream(path, { start: 0, end: s.size - 1 }, signal);
    if (body === undefined)
      throw new LadingError(ErrorCode.Io, `upload ${id}: its data is missing`);
    this.#own(id, s.gen);
    return body;
  }

  /**
   * commit copies the session's bytes to the blob key. It refuses (CONFLICT)
   * unless the stored state is the one this instance last wrote through its
   * own appends or last read: the registry's in-process hash covers only
   * the bytes that went through this process, and only the objects a state
   * names, which never change, are copied.
   */
  async commit(id: string, digest: Digest, options?: StorageOptions): Promise<void> {
    const signal = options?.signal;
    let s = await this.#state(id, signal);
    const changed = (): LadingError =>
      new LadingError(
        ErrorCode.Conflict,
        `upload ${id} changed since this process wrote or read it`,
      );
    if (!this.#owns(id, s)) throw changed();
    const target = `blobs/${digestAlgorithm(digest)}/${digestHex(digest)}`;
    if (s.staged !== true && s.parts.length === 0) {
      // Smaller than a part: the blob is (the first `size` bytes of) the tail.
      const bytes = await this.#tail(id, s, signal);
      await this.#bucket.put(target, bytes, undefined, signal);
    } else {
      if (s.staged !== true) {
        s = await this.#stage(id, s, signal);
        if (!this.#owns(id, s)) throw changed();
      }
      await this.#mp.copy(this.#dataPath(id, s), target, s.size, signal);
    }
    await this.#remove(id, s, signal);
  }

  /** remove deletes a session: its state first (so it is gone at once), then its objects. */
  async #remove(id: string, s: SessionState, signal?: AbortSignal): Promise<void> {
    this.#own(id, undefined);
    await this.#bucket.delete(`uploads/${id}/state`, signal);
    if (s.multipart !== undefined) {
      await this.#mp.abort(this.#dataPath(id, s), s.multipart, signal);
    }
    for await (const page of this.#bucket.list(`uploads/${id}/`, false, signal)) {
      for (const key of page.keys) await this.#bucket.delete(`uploads/${id}/${key}`, signal);
    }
  }

  async cancel(id: string, options?: StorageOptions): Promise<boolean> {
    const s = await this.#read(id, options?.signal);
    if (s === undefined) return false;
    await this.#remove(id, s, options?.signal);
    return true;
  }

  /**
   * sweep aborts multipart uploads under `uploads/` that no session state
   * names and that are older than `olderThan`, and deletes the objects of
   * sessions whose state is gone; it answers how many multipart uploads it aborted.
   */
  async sweep(options?: SweepOptions): Promise<number> {
    const signal = options?.signal;
    const olderThan = options?.olderThan ?? 86_400;
    const cutoff = Date.now() - olderThan * 1000;
    let aborted = 0;
    for await (const u of this.#mp.list('uploads/', signal)) {
      // Stores round Initiated (to the second, upwards here): 0 means any age.
      if (olderThan > 0 && (u.initiated?.getTime() ?? 0) > cutoff) continue;
      const id = u.path.slice('uploads/'.length).split('/')[0] ?? '';
      if ((await this.#read(id, signal))?.multipart === u.uploadId) continue;
      await this.#mp.abort(u.path, u.uploadId, signal);
      aborted++;
    }
    for await (const page of this.#bucket.list('uploads/', true, signal)) {
      for (const p of page.prefixes) {
        const id = p.slice(0, -1);
        if (!isUploadId(id) || (await this.#read(id, signal)) !== undefined) continue;
        for await (const inner of this.#bucket.list(`uploads/${id}/`, false, signal)) {
          for (const key of inner.keys) await this.#bucket.delete(`uploads/${id}/${key}`, signal);
        }
      }
    }
    return aborted;
  }
}
