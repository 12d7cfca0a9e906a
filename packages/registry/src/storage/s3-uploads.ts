import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { digestAlgorithm, digestHex, ErrorCode, LadingError, type Digest } from '@lading/core';
import { isUploadId, unknownUpload } from '../names.js';
import { isMissing, type Bucket } from './s3-bucket.js';
import { Multipart, type Part } from './s3-multipart.js';
import type {
  StorageOptions,
  UploadInfo,
  UploadSession,
  UploadStatus,
  UploadStore,
} from './types.js';

const maxParts = 10_000;
const maxStateObject = 2 * 1024 * 1024;

/** SweepOptions configure {@link S3UploadStore.sweep}. */
export interface SweepOptions extends StorageOptions {
  /** olderThan is the age in seconds after which an unowned multipart upload is aborted (default 86400; 0: any age). */
  readonly olderThan?: number | undefined;
}

/**
 * SessionState is an upload session as stored in `uploads/<id>/state`, the
 * object whose rewrite commits an append. Bytes `[0, tailStart)` are the
 * parts of multipart upload `multipart` (or, once `staged`, the object
 * `uploads/<id>/data`), bytes `[tailStart, size)` the first bytes of the
 * object `uploads/<id>/tail-<tailStart>`.
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

  #dataPath(id: string): string {
    return `uploads/${id}/data`;
  }

  #tailPath(id: string, start: number): string {
    return `uploads/${id}/tail-${start}`;
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
    await this.#write(
      id,
      { v: 1, repository, createdAt: now, updatedAt: now, size: 0, parts: [] },
      options?.signal,
    );
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
    options?: StorageOptions,
  ): Promise<number> {
    const signal = options?.signal;
    let s: SessionState;
    const buffered: Buffer[] = [];
    let bufferedSize = 0;
    try {
      s = await this.#state(id, signal);
      if (s.size !== offset) {
        throw new LadingError(ErrorCode.Conflict, `upload ${id} is at ${s.size}, not ${offset}`);
      }
      if (s.staged === true) s = await this.#unstage(id, s, signal);
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
    const start = tailStart(s);
    const parts = [...s.parts];
    let multipart = s.multipart;
    let received = 0;
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
        throw new LadingError(ErrorCode.InvalidArgument, `upload ${id} exceeds ${maxParts} parts`);
      }
      multipart ??= await this.#mp.create(this.#dataPath(id), signal);
      const number = parts.length + 1;
      parts.push(['', part.length]);
      const uploadId = multipart;
      const uploading = this.#mp
        .uploadPart(this.#dataPath(id), uploadId, number, part, signal)
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
        buffered.push(chunk);
        bufferedSize += chunk.length;
        received += chunk.length;
        while (bufferedSize >= this.#partSize) await flush();
      }
    } catch (err) {
      failure = err instanceof Error ? err : new Error(String(err));
      data.destroy();
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
    const newStart = parts.reduce((n, [, size]) => n + size, 0);
    const tail = Buffer.concat(buffered, bufferedSize);
    try {
      if (tail.length > 0)
        await this.#bucket.put(this.#tailPath(id, newStart), tail, undefined, signal);
      const next: SessionState = {
        ...s,
        multipart,
        parts,
        size: newStart + tail.length,
        updatedAt: Date.now(),
      };
      await this.#write(id, next, signal);
      if (newStart !== start && s.size > start) {
        await this.#bucket.delete(this.#tailPath(id, start), signal);
      }
      if (failure !== undefined) throw failure;
      return next.size;
    } catch (err) {
      throw failure ?? err;
    }
  }

  /** tail reads the session's stored tail: bytes [tailStart, size). */
  async #tail(id: string, s: SessionState, signal?: AbortSignal): Promise<Buffer> {
    const start = tailStart(s);
    if (s.size === start) return Buffer.alloc(0);
    const tail = await this.#bucket.bytes(this.#tailPath(id, start), this.#partSize, signal, {
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
   * `uploads/<id>/data`, so the bytes can be read back and copied.
   */
  async #stage(id: string, s: SessionState, signal?: AbortSignal): Promise<SessionState> {
    const data = this.#dataPath(id);
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
    try {
      await this.#mp.complete(data, s.multipart, parts, signal);
    } catch (err) {
      // Another process (or an earlier, interrupted call) completed it already.
      if (!isMissing(err) || (await this.#bucket.head(data, signal))?.size !== s.size) {
        throw this.#bucket.fail('COMPLETE-MULTIPART', data, err);
      }
    }
    const next: SessionState = { ...s, multipart: undefined, parts: [], staged: true };
    await this.#write(id, next, signal);
    if (s.size > start) await this.#bucket.delete(this.#tailPath(id, start), signal);
    return next;
  }

  /** unstage reopens a staged session for more bytes: a new multipart upload starting with a copy of the data. */
  async #unstage(id: string, s: SessionState, signal?: AbortSignal): Promise<SessionState> {
    const data = this.#dataPath(id);
    const uploadId = await this.#mp.create(this.#dataPath(id), signal);
    const parts = await this.#mp.copyParts(data, data, uploadId, s.size, signal);
    const next: SessionState = { ...s, multipart: uploadId, parts, staged: undefined };
    await this.#write(id, next, signal);
    return next;
  }

  async read(id: string, options?: StorageOptions): Promise<Readable> {
    const signal = options?.signal;
    let s = await this.#state(id, signal);
    if (s.size === 0) return Readable.from([]);
    let path: string;
    let end: number;
    if (s.staged !== true && s.parts.length === 0) {
      path = this.#tailPath(id, 0);
      end = s.size - 1;
    } else {
      if (s.staged !== true) s = await this.#stage(id, s, signal);
      path = this.#dataPath(id);
      end = s.size - 1;
    }
    const body = await this.#bucket.stream(path, { start: 0, end }, signal);
    if (body === undefined)
      throw new LadingError(ErrorCode.Io, `upload ${id}: its data is missing`);
    return body;
  }

  async commit(id: string, digest: Digest, options?: StorageOptions): Promise<void> {
    const signal = options?.signal;
    let s = await this.#state(id, signal);
    const target = `blobs/${digestAlgorithm(digest)}/${digestHex(digest)}`;
    if (s.staged !== true && s.parts.length === 0) {
      // Smaller than a part: the blob is (the first `size` bytes of) the tail.
      const bytes = await this.#tail(id, s, signal);
      await this.#bucket.put(target, bytes, undefined, signal);
    } else {
      if (s.staged !== true) s = await this.#stage(id, s, signal);
      await this.#mp.copy(this.#dataPath(id), target, s.size, signal);
    }
    await this.#remove(id, s, signal);
  }

  /** remove deletes a session: its state first (so it is gone at once), then its objects. */
  async #remove(id: string, s: SessionState, signal?: AbortSignal): Promise<void> {
    await this.#bucket.delete(`uploads/${id}/state`, signal);
    if (s.multipart !== undefined) await this.#mp.abort(this.#dataPath(id), s.multipart, signal);
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
