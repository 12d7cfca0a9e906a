import type { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import {
  DigestMismatchError,
  HashingStream,
  createHasher,
  isLadingError,
  type Digest,
  type IoOptions,
} from '@lading/core';
import { ByteCounter, isVerified, ownDigest, type VerifiedContent } from '@lading/core/internal';
import { RegistryError, UploadError } from './errors.js';
import { parseRangeEnd, watchSource } from './internal/upload-source.js';
import {
  drain,
  errorFromBody,
  errorFromResponse,
  header,
  type Headers,
  type SendResponse,
  type Transport,
} from './internal/transport/index.js';

/** answerMs is how long a PATCH whose body was ended early waits for the registry's answer. */
const answerMs = 5000;
/** UploadMode picks how blob bytes travel. @see ../README.md */
export type UploadMode = 'stream' | 'chunked' | 'monolithic';

/** DEFAULT_CHUNK_SIZE is the chunk size of chunked uploads unless the registry asks for more. */
export const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;

/**
 * MAX_CHUNK_SIZE is the largest chunk a chunked upload holds in memory: a
 * larger `chunkSize` is lowered to it; a registry whose
 * `OCI-Chunk-Min-Length` is larger gets the blob as one streamed PATCH.
 */
export const MAX_CHUNK_SIZE = 64 * 1024 * 1024;

/** UploadResult is what a committed upload stored. */
export type UploadResult = { readonly digest: Digest; readonly size: number };

/** UploadOptions configure {@link BlobUpload.upload}. */
export type UploadOptions = IoOptions & {
  /** mode picks how the bytes travel (default `stream`). */
  mode?: UploadMode;
  /** chunkSize of `chunked` uploads. */
  chunkSize?: number;
  /** expected digest and size of the blob, checked before the upload commits. */
  expected?: { digest?: Digest | undefined; size?: number | undefined };
  /** onProgress receives the bytes sent so far. */
  onProgress?: (bytes: number) => void;
};

/**
 * BlobUpload is one open blob upload (distribution-spec "push"): it
 * always uses the latest `Location` the registry returned (relative ones
 * resolved against the previous URL, query strings kept), and sends
 * credentials only when that location is on the registry's own origin.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-blobs
 */
export class BlobUpload {
  readonly repository: string;
  /** minChunkLength is the registry's `OCI-Chunk-Min-Length`, when it sent one. */
  readonly minChunkLength: number | undefined;
  readonly #transport: Transport;
  #location: URL;
  #offset = 0;
  #closed = false;

  /** @internal built by {@link RegistryClient.openUploadOrMount}. */
  constructor(
    transport: Transport,
    repository: string,
    location: URL,
    minChunkLength: number | undefined,
  ) {
    this.#transport = transport;
    this.repository = repository;
    this.#location = location;
    this.minChunkLength = minChunkLength;
  }

  /** location is the URL the next request goes to. */
  get location(): string {
    return this.#location.toString();
  }

  /** offset is how many bytes the registry has acknowledged. */
  get offset(): number {
    return this.#offset;
  }

  /** closed says the session was committed or cancelled. */
  get closed(): boolean {
    return this.#closed;
  }

  get #scopes(): string[] {
    return [`repository:${this.repository}:pull,push`];
  }

  #advance(res: SendResponse): void {
    const loc = header(res.headers, 'location');
    if (loc !== undefined && loc !== '') this.#location = new URL(loc, this.#location);
    const end = parseRangeEnd(header(res.headers, 'range'));
    if (end !== undefined) this.#offset = end;
  }

  async #expect(res: SendResponse, method: string, ok: readonly number[]): Promise<void> {
    if (ok.includes(res.status)) {
      this.#advance(res);
      await drain(res.body);
      return;
    }
    throw await errorFromResponse(method, res);
  }

  /**
   * write sends one chunk as a `Content-Range` PATCH at the current offset.
   * @throws REGISTRY_ERROR (status 416 when the registry disagrees on the offset), NETWORK
   */
  async write(chunk: Uint8Array, options: IoOptions = {}): Promise<void> {
    const start = this.#offset;
    const res = await this.#transport.send({
      method: 'PATCH',
      url: this.#location,
      headers: {
        'content-type': 'application/octet-stream',
        'content-range': `${start}-${start + chunk.length - 1}`,
        'content-length': String(chunk.length),
      },
      body: chunk,
      scopes: this.#scopes,
      signal: options.signal,
    });
    await this.#expect(res, 'PATCH', [202, 204]);
    if (parseRangeEnd(header(res.headers, 'range')) === undefined)
      this.#offset = start + chunk.length;
  }

  /**
   * writeStream sends a whole stream as one PATCH with chunked transfer
   * encoding; resolves the byte count.
   * @throws REGISTRY_ERROR, NETWORK
   */
  async writeStream(source: Readable, options: IoOptions = {}): Promise<number> {
    const watch = watchSource(source);
    const counter = new ByteCounter();
    const piped = pipeline(watch.stream, counter);
    piped.catch(() => undefined);
    try {
      return await this.#patchStream(counter, piped, options);
    } catch (err) {
      throw watch.error() ?? err;
    }
  }

  /** patchStream sends `body` (the end of `piped`) as one PATCH. */
  async #patchStream(body: ByteCounter, piped: Promise<void>, options: IoOptions): Promise<number> {
    const start = this.#offset;
    // The request is cut only when the registry has not answered within
    // `answerMs` of the source failing or the caller aborting.
    const cut = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const giveUp = (): void => {
      timer ??= setTimeout(() => {
        cut.abort(options.signal?.reason);
      }, answerMs);
    };
    piped.catch(giveUp);
    options.signal?.addEventListener('abort', giveUp, { once: true });
    let res: SendResponse;
    try {
      res = await this.#transport.send({
        method: 'PATCH',
        url: this.#location,
        headers: { 'content-type': 'application/octet-stream' },
        body,
        scopes: this.#scopes,
        signal: cut.signal,
      });
    } catch (err) {
      body.destroy();
      await piped.catch(() => undefined);
      throw options.signal?.aborted === true ? (options.signal.reason ?? err) : err;
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', giveUp);
    }
    await piped.catch(async (err: unknown) => {
      // The body was ended early: the answer carries the location the
      // session is cancelled at.
      if (res.status === 202 || res.status === 204) this.#advance(res);
      await drain(res.body);
      throw options.signal?.aborted === true ? (options.signal.reason ?? err) : err;
    });
    await this.#expect(res, 'PATCH', [202, 204]);
    if (parseRangeEnd(header(res.headers, 'range')) === undefined)
      this.#offset = start + body.count;
    return body.count;
  }

  /**
   * status asks the registry how far the upload got (`GET` on the
   * location) and updates `offset` and `location`.
   */
  async status(options: IoOptions = {}): Promise<number> {
    const res = await this.#transport.send({
      method: 'GET',
      url: this.#location,
      scopes: this.#scopes,
      signal: options.signal,
    });
    if (res.status === 204 || res.status === 202 || res.status === 200) {
      const loc = header(res.headers, 'location');
      if (loc !== undefined && loc !== '') this.#location = new URL(loc, this.#location);
      this.#offset = parseRangeEnd(header(res.headers, 'range')) ?? 0;
      await drain(res.body);
      return this.#offset;
    }
    throw await errorFromResponse('GET', res);
  }

  /** resume continues a session from a location saved earlier; resolves the acknowledged offset. */
  async resume(location: string, options: IoOptions = {}): Promise<number> {
    this.#location = new URL(location, this.#location);
    this.#closed = false;
    return this.status(options);
  }

  /**
   * commit closes the session with `PUT <location>?digest=` (the digest is
   * added with URLSearchParams, keeping any query the registry put there),
   * optionally carrying the final bytes.
   * @throws REGISTRY_ERROR (e.g. DIGEST_INVALID), NETWORK
   */
  async commit(
    digest: Digest,
    options: IoOptions & { body?: Uint8Array | Readable; length?: number } = {},
  ): Promise<string | undefined> {
    const url = this.#commitUrl(digest);
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (options.body === undefined) headers['content-length'] = '0';
    else if (options.length !== undefined) headers['content-length'] = String(options.length);
    else if (options.body instanceof Uint8Array)
      headers['content-length'] = String(options.body.length);
    const res = await this.#transport.send({
      method: 'PUT',
      url,
      headers,
      body: options.body ?? null,
      scopes: this.#scopes,
      signal: options.signal,
    });
    if (!committed(res.status)) throw await errorFromResponse('PUT', res);
    await drain(res.body);
    checkStored(res.headers, digest);
    this.#closed = true;
    return header(res.headers, 'location');
  }

  /**
   * @internal socketCommit sends the whole blob, `length` bytes, as the
   * body of the commit (`PUT ?digest=`, the monolithic upload of the
   * distribution spec) on a connection of its own (see
   * Transport.socketUpload), for a caller that lends the chunks it writes
   * and checks them before the last one goes: one request instead of a
   * PATCH and then an empty PUT. `done()` waits for the registry's answer
   * and closes the session. Undefined when the session cannot (https, a
   * caller's dispatcher).
   * @throws REGISTRY_ERROR (e.g. DIGEST_INVALID), DIGEST_MISMATCH, NETWORK, ABORTED
   */
  async socketCommit(
    digest: Digest,
    length: number,
    signal?: AbortSignal,
  ): Promise<
    { write(chunk: Buffer): Promise<void>; done(): Promise<void>; destroy(): void } | undefined
  > {
    const url = this.#commitUrl(digest);
    const up = await this.#transport.socketUpload(
      'PUT',
      url,
      { 'content-type': 'application/octet-stream' },
      length,
      this.#scopes,
      signal,
    );
    if (up === undefined) return undefined;
    return {
      write: (chunk) => up.write(chunk),
      destroy: () => {
        up.destroy();
      },
      done: async () => {
        const a = await up.answer();
        if (!committed(a.status)) throw errorFromBody('PUT', url, a.status, a.headers, a.body);
        this.#closed = true;
        this.#offset = length;
        checkStored(a.headers, digest);
      },
    };
  }

  /**
   * #commitUrl is the session's location with `?digest=` added
   * (URLSearchParams keeps any query the registry put there).
   */
  #commitUrl(digest: Digest): URL {
    const url = new URL(this.#location);
    url.searchParams.set('digest', digest);
    return url;
  }

  /** cancel deletes the session; errors are swallowed (it is cleanup). */
  async cancel(options: IoOptions = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      const res = await this.#transport.send({
        method: 'DELETE',
        url: this.#location,
        scopes: this.#scopes,
        signal: options.signal,
      });
      await drain(res.body);
    } catch {
      // best effort
    }
  }

  /**
   * upload sends `source` through this session in one pass and commits it:
   * `stream` (one chunked PATCH, then PUT ?digest=), `chunked`
   * (Content-Range PATCHes of at least OCI-Chunk-Min-Length; a 416 or a
   * dropped connection is resumed from the acknowledged offset while the
   * current chunk is still held) or `monolithic` (PUT with the body; needs
   * `size` and `digest`). The digest is computed while the bytes flow and
   * checked against `expected.digest` when given — unless `source` is marked
   * as verifying itself against `expected` (markVerified), which fails it
   * before its end.
   * @throws DIGEST_MISMATCH, SIZE_MISMATCH, UPLOAD_FAILED, REGISTRY_ERROR, NETWORK
   */
  async upload(source: Readable, options: UploadOptions = {}): Promise<UploadResult> {
    const { digest, size } = options.expected ?? {};
    // A source that checks itself against the expected digest and size fails
    // before it ends when they differ, and the commit waits for its end.
    const verified =
      digest !== undefined && size !== undefined && isVerified(source, { digest, size });
    // A source that hashes its own bytes (a layer's pass) tells its digest
    // once it has ended: hashing it here too would cost a second sha256.
    const own = verified ? undefined : ownDigest(source);
    const watch = watchSource(source);
    try {
      return await this.#upload(watch.stream, options, verified, own);
    } catch (err) {
      throw watch.error() ?? err;
    } finally {
      watch.stop();
    }
  }

  async #upload(
    source: Readable,
    options: UploadOptions,
    verified: boolean,
    own: (() => Promise<VerifiedContent>) | undefined,
  ): Promise<UploadResult> {
    const mode = options.mode ?? 'stream';
    const expected = options.expected ?? {};
    if (mode === 'monolithic' && expected.digest !== undefined && expected.size !== undefined) {
      const counter = ByteCounter.reporting(options.onProgress);
      const piped = pipeline(source, counter);
      piped.catch(() => undefined);
      try {
        await this.commit(expected.digest, {
          body: counter,
          length: expected.size,
          signal: options.signal,
        });
      } finally {
        counter.destroy();
      }
      await piped.catch((err: unknown) => {
        if (!isLadingError(err)) return;
        throw err;
      });
      return { digest: expected.digest, size: expected.size };
    }
    // A registry that asks for chunks past MAX_CHUNK_SIZE is sent the blob in
    // one streamed PATCH (one chunk of any size satisfies its minimum): a
    // chunk is held in memory.
    if (mode === 'chunked' && (this.minChunkLength ?? 0) <= MAX_CHUNK_SIZE)
      return this.#uploadChunked(source, options, expected);
    // (an abort is watched from here on: one that came before is seen now)
    options.signal?.throwIfAborted();
    const hashing = verified || own !== undefined ? undefined : new HashingStream();
    const counter = ByteCounter.reporting(options.onProgress);
    // The body ends with the source; when the source fails (or the caller
    // aborts), the body is ended where it is instead of cut off, so that the
    // registry answers the PATCH: a registry that signs the upload offset
    // into the session URL (the CNCF registry) refuses the DELETE of a
    // session whose request was cut, and keeps its bytes.
    const last = hashing ?? source;
    const piped =
      hashing === undefined ? finished(source, { writable: false }) : pipeline(source, hashing);
    last.pipe(counter);
    piped.catch(() => {
      last.unpipe(counter);
      counter.end();
    });
    // The body gone before the source ended (the request failed, or the
    // registry answered before the end): the source is released.
    counter.once('close', () => {
      if (!last.readableEnded)
        source.destroy(new UploadError(`upload to ${this.repository} ended before the source did`));
    });
    const onAbort = (): void => {
      source.destroy(options.signal?.reason instanceof Error ? options.signal.reason : undefined);
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    let size: number;
    try {
      size = await this.#patchStream(counter, piped, options);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      hashing?.destroy();
    }
    await piped.catch(() => undefined);
    // #patchStream has seen the source end cleanly (it rethrows its error).
    const { digest, size: hashed } =
      hashing !== undefined
        ? { digest: hashing.digest, size: hashing.size }
        : own !== undefined
          ? await own()
          : expected;
    if (digest === undefined || hashed !== size) {
      throw new UploadError(`upload to ${this.repository} ended before the source did`);
    }
    if (expected.digest !== undefined && expected.digest !== digest) {
      throw new DigestMismatchError(expected.digest, digest, 'uploaded blob');
    }
    await this.commit(digest, options);
    return { digest, size };
  }

  async #uploadChunked(
    source: Readable,
    options: IoOptions & { chunkSize?: number; onProgress?: (bytes: number) => void },
    expected: { digest?: Digest | undefined },
  ): Promise<UploadResult> {
    const chunkSize = Math.max(
      Math.min(options.chunkSize ?? DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE),
      this.minChunkLength ?? 0,
      1,
    );
    const hasher = createHasher();
    let size = 0;
    let pending: Buffer[] = [];
    let pendingLength = 0;
    const flush = async (): Promise<void> => {
      if (pendingLength === 0) return;
      const chunk = Buffer.concat(pending, pendingLength);
      pending = [];
      pendingLength = 0;
      await this.#sendChunkResuming(chunk, options.signal);
      options.onProgress?.(this.#offset);
    };
    for await (const part of source) {
      const b = part as Buffer;
      hasher.update(b);
      size += b.length;
      let rest = b;
      while (pendingLength + rest.length >= chunkSize) {
        const take = chunkSize - pendingLength;
        pending.push(rest.subarray(0, take));
        pendingLength += take;
        rest = rest.subarray(take);
        await flush();
      }
      if (rest.length > 0) {
        pending.push(rest);
        pendingLength += rest.length;
      }
    }
    await flush();
    const digest = hasher.digest();
    if (expected.digest !== undefined && expected.digest !== digest) {
      throw new DigestMismatchError(expected.digest, digest, 'uploaded blob');
    }
    await this.commit(digest, options);
    return { digest, size };
  }

  /**
   * sendChunkResuming PATCHes one chunk; on a 416 or a dropped connection it
   * asks for the upload's status and resends the unacknowledged tail of the
   * chunk, which is still held here. A registry that answers with a `Range`
   * short of what was sent is sent the rest the same way: the next chunk
   * never goes at an offset the registry did not acknowledge.
   */
  async #sendChunkResuming(chunk: Buffer, signal: AbortSignal | undefined): Promise<void> {
    const chunkStart = this.#offset;
    const chunkEnd = chunkStart + chunk.length;
    for (let attempt = 0; ; attempt++) {
      const done = this.#offset - chunkStart;
      try {
        await this.write(chunk.subarray(done), { signal });
        if (this.#offset === chunkEnd) return;
        if (this.#offset < chunkStart + done || this.#offset > chunkEnd || attempt >= 3) {
          throw new UploadError(
            `upload to ${this.repository} failed: after a PATCH of bytes ${chunkStart + done}-${chunkEnd - 1} the registry acknowledged ${this.#offset} bytes`,
            undefined,
            true,
          );
        }
        continue;
      } catch (err) {
        const resumable =
          err instanceof RegistryError &&
          (err.status === 416 || err.status === undefined) &&
          err.code !== 'ABORTED';
        if (!resumable || attempt >= 3 || signal?.aborted === true) throw err;
        let acked: number;
        try {
          acked = await this.status({ signal });
        } catch (statusErr) {
          throw new UploadError(
            `upload to ${this.repository} cannot be resumed: the status request failed`,
            statusErr,
            true,
          );
        }
        if (acked < chunkStart || acked > chunkStart + chunk.length) {
          throw new UploadError(
            `upload to ${this.repository} cannot be resumed: the registry acknowledged ${acked} bytes, the chunk held here covers ${chunkStart}-${chunkStart + chunk.length}`,
            err,
            true,
          );
        }
        if (acked === chunkStart + chunk.length) return;
      }
    }
  }
}

/**
 * UploadSession is the former name of {@link BlobUpload}.
 * @deprecated Use BlobUpload (@lading/registry's UploadSession is a storage type).
 */
export const UploadSession = BlobUpload;
/** @deprecated Use BlobUpload. */
export type UploadSession = BlobUpload;

/** committed says whether a commit's status stored the blob. */
function committed(status: number): boolean {
  return status === 201 || status === 204 || status === 202;
}

/** checkStored fails when the registry says it stored other bytes than `digest`. @throws DIGEST_MISMATCH */
function checkStored(headers: Headers, digest: Digest): void {
  const stored = header(headers, 'docker-content-digest');
  if (stored !== undefined && stored !== digest)
    throw new DigestMismatchError(digest, stored, 'committed blob');
}
