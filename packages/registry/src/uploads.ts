import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { digestAlgorithm, isLadingError, type Digest, type DigestAlgorithm } from '@lading/core';
import { mountBlob } from './blobs.js';
import { HttpError, SpecErrorCode } from './errors.js';
import type { Call, RegistryContext } from './internal/context.js';
import {
  contentLength,
  type HashCounter,
  hasBody,
  originOf,
  parseDigestParam,
  send,
} from './internal/http.js';
import type {
  CompletionResponse,
  UploadCreateOptions,
  UploadSession,
  UploadStore,
} from './storage/types.js';

// Uploads: POST /v2/<name>/blobs/uploads/ and PATCH/PUT/GET/DELETE of a
// session, the closing commit, and the commit hook for external locations.

function rangeHeader(size: number): string {
  // distribution's convention: an empty upload reports "0-0".
  return `0-${Math.max(0, size - 1)}`;
}

function parseRangeSpec(text: string): { start: number; end: number } | undefined {
  const m = /^(?:bytes[ =])?(\d+)-(\d+)$/.exec(text.trim());
  if (m === null) return undefined;
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) return undefined;
  return { start, end };
}

function uploadHeaders(name: string, id: string, size: number): Record<string, string> {
  return {
    Location: `/v2/${name}/blobs/uploads/${id}`,
    Range: rangeHeader(size),
    'Docker-Upload-UUID': id,
  };
}

function blobCreated(name: string, digest: Digest): Record<string, string> {
  return { Location: `/v2/${name}/blobs/${digest}`, 'Docker-Content-Digest': digest };
}

/**
 * sessionGone turns the NOT_FOUND that an upload store's append, read or
 * commit throws for a session it does not hold (the storage error contract
 * in storage/types.ts) into 404 BLOB_UPLOAD_UNKNOWN, forgetting the
 * session; any other error passes through.
 */
function sessionGone(ctx: RegistryContext, id: string, err: unknown): unknown {
  if (!isLadingError(err, 'NOT_FOUND')) return err;
  ctx.sessions.forget(id);
  return new HttpError(404, SpecErrorCode.BlobUploadUnknown, undefined, { uuid: id });
}

/**
 * uploadStore answers the storage's upload store.
 * @throws HttpError 405 UNSUPPORTED when the storage is read-only
 */
function uploadStore(ctx: RegistryContext): UploadStore {
  const u = ctx.storage.uploads;
  if (u === undefined || ctx.storage.metadata.linkBlob === undefined) {
    throw new HttpError(405, SpecErrorCode.Unsupported, 'this registry is read-only');
  }
  return u;
}

/**
 * startUpload answers POST: a mount (201), a single-POST monolithic upload
 * (201), or a new session (202).
 */
export async function startUpload(
  call: Call,
  name: string,
  user: string | undefined,
): Promise<void> {
  const { ctx, req, res, query } = call;
  const uploads = uploadStore(ctx);
  const sessions = ctx.sessions;
  const owner = user === undefined ? `addr:${req.socket.remoteAddress ?? ''}` : `user:${user}`;
  const mount = query.get('mount');
  if (mount !== null && (await mountBlob(call, name, mount, query.get('from')))) return;
  const algorithmParam = query.get('digest-algorithm');
  if (algorithmParam !== null && algorithmParam !== 'sha256' && algorithmParam !== 'sha512') {
    throw new HttpError(400, SpecErrorCode.DigestInvalid, 'unsupported digest algorithm', {
      algorithm: algorithmParam,
    });
  }
  const digestParam = query.get('digest');
  const declared = contentLength(req);
  if (digestParam !== null && mount === null && (hasBody(req) || declared === 0)) {
    // Single-POST monolithic upload (an empty blob included: Content-Length: 0).
    const digest = parseDigestParam(digestParam);
    const session = await open(ctx, uploads, name, owner);
    try {
      await append(ctx, uploads, session.id, 0, req, declared, digestAlgorithm(digest));
      await commit(ctx, uploads, name, session.id, digest, declared);
    } catch (err) {
      await uploads.cancel(session.id).catch(() => undefined);
      sessions.forget(session.id);
      throw err;
    }
    send(req, res, 201, blobCreated(name, digest));
    return;
  }
  req.resume();
  const session = await open(ctx, uploads, name, owner, { origin: originOf(req) });
  sessions.newHash(session.id, algorithmParam === 'sha512' ? 'sha512' : 'sha256');
  const headers = uploadHeaders(name, session.id, 0);
  if (session.location !== undefined) headers.Location = session.location;
  headers['OCI-Chunk-Min-Length'] = String(ctx.chunkMin);
  send(req, res, 202, headers);
}

/**
 * open creates a session for `owner` in the slot {@link UploadSessions.admit}
 * reserves, so that parallel POSTs cannot pass the session caps together.
 * @throws HttpError 429 TOOMANYREQUESTS over the session caps
 */
async function open(
  ctx: RegistryContext,
  uploads: UploadStore,
  name: string,
  owner: string,
  options?: UploadCreateOptions,
): Promise<UploadSession> {
  const release = ctx.sessions.admit(owner);
  let session: UploadSession;
  try {
    session = await uploads.create(name, options);
  } catch (err) {
    release();
    throw err;
  }
  ctx.sessions.opened(session.id, owner, release);
  return session;
}

/**
 * session answers the size of session `id` of `name`, recording activity on it.
 * @throws HttpError 404 BLOB_UPLOAD_UNKNOWN when there is no such session in `name`
 */
async function session(
  ctx: RegistryContext,
  uploads: UploadStore,
  name: string,
  id: string,
): Promise<number> {
  const status = await uploads.status(id).catch(() => undefined);
  if (status?.repository !== name) {
    throw new HttpError(404, SpecErrorCode.BlobUploadUnknown, undefined, { uuid: id });
  }
  ctx.sessions.touch(id, status.size);
  return status.size;
}

/** drop cancels a session (freeing what it holds) and forgets it. */
async function drop(ctx: RegistryContext, uploads: UploadStore, id: string): Promise<void> {
  ctx.sessions.forget(id);
  await uploads.cancel(id).catch(() => undefined);
}

/**
 * append streams `body` into the session at `offset`, hashing as it goes
 * when the session's hash covers exactly the bytes before `offset`.
 */
async function append(
  ctx: RegistryContext,
  uploads: UploadStore,
  id: string,
  offset: number,
  body: IncomingMessage,
  expected: number | undefined,
  algorithm: DigestAlgorithm = 'sha256',
): Promise<number> {
  const sessions = ctx.sessions;
  let state = sessions.hash(id);
  if (state === undefined && offset === 0) state = sessions.newHash(id, algorithm);
  if (state !== undefined && state.size !== offset) {
    sessions.dropHash(id);
    state = undefined;
  }
  let counter: HashCounter;
  try {
    counter = sessions.counter(id, offset, expected, state?.hash);
  } catch (err) {
    await drop(ctx, uploads, id);
    throw err;
  }
  let size: number;
  // Another process sharing the store must see a long append as activity.
  const refreshEvery = sessions.timeoutMs > 0 ? sessions.timeoutMs / 3 : undefined;
  let bodyFailed = false;
  try {
    const [appended, piped] = await Promise.allSettled([
      uploads.append(id, offset, counter, { refreshEvery }),
      pipeline(body, counter),
    ]);
    bodyFailed = piped.status === 'rejected';
    if (piped.status === 'rejected' && piped.reason instanceof HttpError) throw piped.reason;
    if (appended.status === 'rejected') throw appended.reason;
    if (piped.status === 'rejected') throw piped.reason;
    size = appended.value;
    sessions.touch(id, size);
  } catch (err) {
    sessions.dropHash(id);
    let kept: number | undefined;
    if (sessions.dropsSession(err)) {
      await drop(ctx, uploads, id);
    } else {
      // Count what the store kept, not what passed the counter.
      kept = (await uploads.status(id).catch(() => undefined))?.size;
      if (kept !== undefined) sessions.touch(id, kept);
    }
    if (isLadingError(err, 'NOT_FOUND')) throw sessionGone(ctx, id, err);
    if (isLadingError(err, 'CONFLICT')) {
      throw new HttpError(
        416,
        SpecErrorCode.BlobUploadInvalid,
        'upload offset changed',
        undefined,
        {
          Range: rangeHeader(kept ?? 0),
        },
      );
    }
    // The session keeps what the store took of a failed body: say how much.
    const where: Record<string, string> = kept === undefined ? {} : { Range: rangeHeader(kept) };
    if (err instanceof HttpError) {
      if (kept === undefined) throw err;
      throw new HttpError(err.status, err.code, err.message, err.detail, {
        ...err.headers,
        ...where,
      });
    }
    // A store failure names endpoints, keys or paths: those go to the log only.
    if (!bodyFailed) ctx.log(err, body);
    throw new HttpError(
      400,
      SpecErrorCode.BlobUploadInvalid,
      bodyFailed ? 'the request body failed' : 'the storage failed while appending the chunk',
      kept === undefined ? undefined : { kept },
      where,
    );
  }
  if (expected !== undefined && counter.count !== expected) {
    // Only a chunked body can end short of its Content-Range; the store
    // has taken it, so the answer says what the session holds now.
    sessions.dropHash(id);
    throw new HttpError(
      400,
      SpecErrorCode.SizeInvalid,
      'body shorter than declared; the session kept what arrived',
      { declared: expected, received: counter.count, kept: size },
      { Range: rangeHeader(size) },
    );
  }
  if (state !== undefined) {
    if (size === offset + counter.count) state.size = size;
    else sessions.dropHash(id);
  }
  return size;
}

/**
 * chunkLength reads the lengths a PATCH or PUT body declares for the
 * session `id` of `name`, now `size` bytes long: `declared` from
 * Content-Length, `ranged` from Content-Range once the range is checked to
 * start at `size` and to match Content-Length.
 * @throws HttpError 400 BLOB_UPLOAD_INVALID on a malformed Content-Range, SIZE_INVALID when it contradicts Content-Length; 416 with the session's Range when it starts elsewhere
 */
function chunkLength(
  req: IncomingMessage,
  name: string,
  id: string,
  size: number,
): { declared: number | undefined; ranged: number | undefined } {
  const declared = contentLength(req);
  const header = req.headers['content-range'];
  if (header === undefined) return { declared, ranged: undefined };
  const range = parseRangeSpec(header);
  if (range === undefined) {
    throw new HttpError(400, SpecErrorCode.BlobUploadInvalid, 'malformed Content-Range', {
      contentRange: header,
    });
  }
  if (range.start !== size) {
    throw new HttpError(
      416,
      SpecErrorCode.BlobUploadInvalid,
      'chunk out of order',
      {
        offset: size,
      },
      uploadHeaders(name, id, size),
    );
  }
  const ranged = range.end - range.start + 1;
  if (declared !== undefined && declared !== ranged) {
    throw new HttpError(
      400,
      SpecErrorCode.SizeInvalid,
      'Content-Length does not match Content-Range',
      {
        contentLength: declared,
        range: ranged,
      },
    );
  }
  return { declared, ranged };
}

/** patchUpload answers PATCH: one streamed or ranged chunk (202). */
export async function patchUpload(call: Call, name: string, id: string): Promise<void> {
  const { ctx, req, res } = call;
  const uploads = uploadStore(ctx);
  await ctx.sessions.lock(
    id,
    async () => {
      const size = await session(ctx, uploads, name, id);
      const { declared, ranged } = chunkLength(req, name, id, size);
      const newSize = await append(ctx, uploads, id, size, req, ranged ?? declared);
      send(req, res, 202, uploadHeaders(name, id, newSize));
    },
    stopRequest(req),
  );
}

/** stopRequest ends a request that is writing a session which a DELETE cancels. */
function stopRequest(req: IncomingMessage): () => void {
  return () => {
    req.destroy(new HttpError(404, SpecErrorCode.BlobUploadUnknown, 'the upload was cancelled'));
  };
}

/** putUpload answers the closing `PUT ?digest=`, with or without a last chunk (201). */
export async function putUpload(call: Call, name: string, id: string): Promise<void> {
  const { ctx, req, res, query } = call;
  const uploads = uploadStore(ctx);
  await ctx.sessions.lock(
    id,
    async () => {
      let size = await session(ctx, uploads, name, id);
      const digest = parseDigestParam(query.get('digest'));
      if (hasBody(req)) {
        const { declared, ranged } = chunkLength(req, name, id, size);
        const algorithm = digestAlgorithm(digest);
        size = await append(ctx, uploads, id, size, req, ranged ?? declared, algorithm);
      }
      await commit(ctx, uploads, name, id, digest, undefined);
      send(req, res, 201, blobCreated(name, digest));
    },
    stopRequest(req),
  );
}

/**
 * commit verifies the session's bytes against `digest` and makes the blob visible in `name`.
 * @throws HttpError 400 DIGEST_INVALID (the session is dropped) or SIZE_INVALID; 404 BLOB_UPLOAD_UNKNOWN
 */
async function commit(
  ctx: RegistryContext,
  uploads: UploadStore,
  name: string,
  id: string,
  digest: Digest,
  expectedSize: number | undefined,
): Promise<void> {
  const status = await uploads.status(id);
  if (status === undefined) throw new HttpError(404, SpecErrorCode.BlobUploadUnknown);
  if (expectedSize !== undefined && status.size !== expectedSize) {
    throw new HttpError(400, SpecErrorCode.SizeInvalid, undefined, {
      declared: expectedSize,
      received: status.size,
    });
  }
  const algorithm = digestAlgorithm(digest);
  const state = ctx.sessions.hash(id);
  const refuse = async (actual: string): Promise<never> => {
    await uploads.cancel(id).catch(() => undefined);
    ctx.sessions.forget(id);
    throw new HttpError(400, SpecErrorCode.DigestInvalid, undefined, { expected: digest, actual });
  };
  const committed = async (): Promise<void> => {
    ctx.sessions.forget(id);
    await ctx.storage.metadata.linkBlob?.(name, digest);
  };
  if (state?.algorithm === algorithm && state.size === status.size) {
    // Every byte went through this process's hash. The store refuses the
    // commit (CONFLICT) when another process wrote the session since: then
    // the hash proves nothing and the bytes are read back below.
    const actual = `${algorithm}:${state.hash.copy().digest('hex')}`;
    if (actual !== digest) await refuse(actual);
    const stale = await uploads.commit(id, digest).then(
      () => false,
      (err: unknown) => {
        if (isLadingError(err, 'CONFLICT')) return true;
        throw sessionGone(ctx, id, err);
      },
    );
    if (!stale) {
      await committed();
      return;
    }
  }
  // After a restart, a failed chunk, chunks through another process or an
  // external upload: hash what the store holds (a hash kept past this
  // point could later vouch for bytes it never saw).
  ctx.sessions.dropHash(id);
  const hash = createHash(algorithm);
  let seen = 0;
  const stored = await uploads.read(id).catch((err: unknown) => {
    throw sessionGone(ctx, id, err);
  });
  for await (const chunk of stored) {
    const b = chunk as Buffer;
    seen += b.length;
    hash.update(b);
  }
  if (seen !== status.size) {
    throw new HttpError(400, SpecErrorCode.SizeInvalid, 'stored upload size changed');
  }
  const actual = `${algorithm}:${hash.digest('hex')}`;
  if (actual !== digest) await refuse(actual);
  await uploads.commit(id, digest).catch((err: unknown) => {
    if (isLadingError(err, 'CONFLICT')) {
      throw new HttpError(
        400,
        SpecErrorCode.BlobUploadInvalid,
        'the upload was written by another request while it was being committed',
      );
    }
    throw sessionGone(ctx, id, err);
  });
  await committed();
}

/**
 * completeUpload is {@link RegistryHooks.complete}: the closing PUT of a
 * session as an external upload location receives it, answered as the
 * HTTP response the registry would send.
 */
export async function completeUpload(
  ctx: RegistryContext,
  id: string,
  digestText: string,
  signal?: AbortSignal,
): Promise<CompletionResponse> {
  try {
    signal?.throwIfAborted();
    const uploads = uploadStore(ctx);
    const digest = parseDigestParam(digestText);
    const status = await uploads.status(id);
    if (status === undefined) throw new HttpError(404, SpecErrorCode.BlobUploadUnknown);
    return await ctx.sessions.lock(id, async () => {
      await commit(ctx, uploads, status.repository, id, digest, undefined);
      return { status: 201, headers: blobCreated(status.repository, digest), body: '' };
    });
  } catch (err) {
    if (err instanceof HttpError) {
      return {
        status: err.status,
        headers: { 'Content-Type': 'application/json', ...err.headers },
        body: err.body(),
      };
    }
    throw err;
  }
}

/** uploadStatus answers GET of a session: 204 with its Range. */
export async function uploadStatus(call: Call, name: string, id: string): Promise<void> {
  const { ctx, req, res } = call;
  const size = await session(ctx, uploadStore(ctx), name, id);
  send(req, res, 204, uploadHeaders(name, id, size));
}

/**
 * cancelUpload answers DELETE of a session (204), after stopping a request
 * that is writing it.
 * @throws HttpError 400 BLOB_UPLOAD_INVALID when that request does not let go within 5 s
 */
export async function cancelUpload(call: Call, name: string, id: string): Promise<void> {
  const { ctx, req, res } = call;
  const uploads = uploadStore(ctx);
  await session(ctx, uploads, name, id);
  // A request still writing the session (the client cut it off, then sent
  // this DELETE) is stopped first: cancelling is what the client asks.
  if (!(await ctx.sessions.stopWriter(id))) {
    throw new HttpError(400, SpecErrorCode.BlobUploadInvalid, 'upload is being written');
  }
  await uploads.cancel(id);
  ctx.sessions.forget(id);
  send(req, res, 204, {});
}
