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
import type { CompletionResponse, UploadStore } from './storage/types.js';

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
  if (digestParam !== null && mount === null && hasBody(req)) {
    // Single-POST monolithic upload.
    const digest = parseDigestParam(digestParam);
    const declared = contentLength(req);
    sessions.admit(owner);
    const session = await uploads.create(name);
    sessions.opened(session.id, owner);
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
  sessions.admit(owner);
  const session = await uploads.create(name, { origin: originOf(req) });
  sessions.opened(session.id, owner);
  sessions.newHash(session.id, algorithmParam === 'sha512' ? 'sha512' : 'sha256');
  const headers = uploadHeaders(name, session.id, 0);
  if (session.location !== undefined) headers.Location = session.location;
  headers['OCI-Chunk-Min-Length'] = String(ctx.chunkMin);
  send(req, res, 202, headers);
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
  try {
    const [appended, piped] = await Promise.allSettled([
      uploads.append(id, offset, counter),
      pipeline(body, counter),
    ]);
    if (piped.status === 'rejected' && piped.reason instanceof HttpError) throw piped.reason;
    if (appended.status === 'rejected') throw appended.reason;
    if (piped.status === 'rejected') throw piped.reason;
    size = appended.value;
    sessions.touch(id, size);
  } catch (err) {
    sessions.dropHash(id);
    if (sessions.dropsSession(err)) {
      await drop(ctx, uploads, id);
    } else {
      // Count what the store kept, not what passed the counter.
      const now = await uploads.status(id).catch(() => undefined);
      if (now !== undefined) sessions.touch(id, now.size);
    }
    if (err instanceof HttpError) throw err;
    if (isLadingError(err, 'NOT_FOUND')) throw sessionGone(ctx, id, err);
    if (isLadingError(err, 'CONFLICT')) {
      const now = await uploads.status(id).catch(() => undefined);
      throw new HttpError(
        416,
        SpecErrorCode.BlobUploadInvalid,
        'upload offset changed',
        undefined,
        {
          Range: rangeHeader(now?.size ?? 0),
        },
      );
    }
    throw new HttpError(400, SpecErrorCode.BlobUploadInvalid, 'the request body failed', {
      reason: err instanceof Error ? err.message : String(err),
    });
  }
  if (expected !== undefined && counter.count !== expected) {
    sessions.dropHash(id);
    throw new HttpError(400, SpecErrorCode.SizeInvalid, 'body shorter than declared', {
      declared: expected,
      received: counter.count,
    });
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
 * start at `size`.
 * @throws HttpError 400 BLOB_UPLOAD_INVALID on a malformed Content-Range; 416 with the session's Range when it starts elsewhere
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
  return { declared, ranged: range.end - range.start + 1 };
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
      if (ranged !== undefined && declared !== undefined && declared !== ranged) {
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
  let actual: string;
  if (state?.algorithm === algorithm && state.size === status.size) {
    actual = `${algorithm}:${state.hash.copy().digest('hex')}`;
  } else {
    // After a restart, a failed chunk or an external upload: hash what the store holds.
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
    actual = `${algorithm}:${hash.digest('hex')}`;
  }
  if (actual !== digest) {
    await uploads.cancel(id).catch(() => undefined);
    ctx.sessions.forget(id);
    throw new HttpError(400, SpecErrorCode.DigestInvalid, undefined, {
      expected: digest,
      actual,
    });
  }
  await uploads.commit(id, digest).catch((err: unknown) => {
    throw sessionGone(ctx, id, err);
  });
  ctx.sessions.forget(id);
  await ctx.storage.metadata.linkBlob?.(name, digest);
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
