import type { IncomingMessage } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { Digest } from '@lading/core';
import { HttpError, SpecErrorCode } from './errors.js';
import { repoNeed, type Call, type RegistryContext } from './internal/context.js';
import { baseHeaders, parseDigestParam, send } from './internal/http.js';
import { sendFile } from './internal/send-file.js';
import { isRepositoryName } from './names.js';

// Blobs: GET/HEAD/DELETE /v2/<name>/blobs/<digest>, and cross-repository mounts.

/** visibleBlobSize answers the size of `digest` when it is linked into `name`, else undefined. */
export async function visibleBlobSize(
  ctx: RegistryContext,
  name: string,
  digest: Digest,
): Promise<number | undefined> {
  if (!(await ctx.storage.metadata.hasBlob(name, digest))) return undefined;
  return (await ctx.storage.blobs.stat(digest))?.size;
}

/**
 * getBlob answers GET and HEAD: the blob or one byte range of it, or a 307
 * to the store's `location()`.
 * @throws HttpError 404 BLOB_UNKNOWN when the blob is not visible in `name`
 */
export async function getBlob(call: Call, name: string, digestText: string): Promise<void> {
  const { ctx, req, res } = call;
  const digest = parseDigestParam(digestText);
  const size = await visibleBlobSize(ctx, name, digest);
  if (size === undefined)
    throw new HttpError(404, SpecErrorCode.BlobUnknown, undefined, { digest });
  const headers: Record<string, string | number> = {
    'Docker-Content-Digest': digest,
    'Content-Type': 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    ETag: `"${digest}"`,
  };
  if (req.method === 'HEAD') {
    send(req, res, 200, { ...headers, 'Content-Length': size });
    return;
  }
  const location = await ctx.storage.blobs.location?.(digest);
  if (location !== undefined) {
    send(req, res, 307, { 'Docker-Content-Digest': digest, Location: location });
    return;
  }
  let start = 0;
  let end = size - 1;
  let status = 200;
  const range = req.headers.range;
  if (range !== undefined) {
    const parsed = parseByteRange(range, size);
    if (parsed === 'unsatisfiable') {
      send(req, res, 416, { 'Content-Range': `bytes */${size}` });
      return;
    }
    if (parsed !== undefined) {
      ({ start, end } = parsed);
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    }
  }
  const length = size === 0 ? 0 : end - start + 1;
  const head = () => {
    res.writeHead(status, { ...baseHeaders, ...headers, 'Content-Length': length });
  };
  const file = length === 0 ? undefined : await ctx.storage.blobs.open?.(digest);
  if (file !== undefined) {
    head();
    try {
      await sendFile(res, file, start, length);
    } catch {
      res.destroy();
    } finally {
      await file.close().catch(() => undefined);
    }
    return;
  }
  const stream = length === 0 ? undefined : await ctx.storage.blobs.get(digest, { start, end });
  if (length > 0 && stream === undefined) {
    throw new HttpError(404, SpecErrorCode.BlobUnknown, undefined, { digest });
  }
  head();
  if (stream === undefined) {
    res.end();
    return;
  }
  try {
    await pipeline(stream, res);
  } catch {
    res.destroy();
  }
}

/**
 * parseByteRange reads one `Range: bytes=a-b` (or `a-`, `-n`) against a
 * blob of `size` bytes; undefined means "serve the whole blob".
 */
function parseByteRange(
  header: string,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null) return undefined; // multiple or odd ranges: serve the whole blob
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') return undefined;
  if (a === '') {
    const suffix = Number(b);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/**
 * deleteBlob answers DELETE: unlinks the blob from `name` (the shared data stays).
 * @throws HttpError 405 UNSUPPORTED when deletes are off; 404 BLOB_UNKNOWN when not linked
 */
export async function deleteBlob(call: Call, name: string, digestText: string): Promise<void> {
  const { ctx, req, res } = call;
  const meta = ctx.storage.metadata;
  if (!ctx.deleteEnabled || meta.unlinkBlob === undefined) {
    throw new HttpError(405, SpecErrorCode.Unsupported, 'blob deletion is disabled');
  }
  const digest = parseDigestParam(digestText);
  if (!(await meta.unlinkBlob(name, digest))) {
    throw new HttpError(404, SpecErrorCode.BlobUnknown, undefined, { digest });
  }
  send(req, res, 202, { 'Docker-Content-Digest': digest });
}

async function mayPull(
  ctx: RegistryContext,
  req: IncomingMessage,
  repository: string,
): Promise<boolean> {
  try {
    await ctx.auth.authorize(req, repoNeed(repository, 'pull'));
    return true;
  } catch {
    return false;
  }
}

/**
 * mountBlob answers `POST …/blobs/uploads/?mount=<digest>&from=<from>` with
 * 201 when `from` links the blob and the caller may pull `from`, linking it
 * into `name`; it answers false (sending nothing) otherwise, and the caller
 * opens an ordinary session (spec: 202).
 * @throws HttpError 400 DIGEST_INVALID on a malformed `mount`
 */
export async function mountBlob(
  call: Call,
  name: string,
  mount: string,
  from: string | null,
): Promise<boolean> {
  const { ctx, req, res } = call;
  const digest = parseDigestParam(mount);
  if (from === null || !isRepositoryName(from) || !(await mayPull(ctx, req, from))) return false;
  if ((await visibleBlobSize(ctx, from, digest)) === undefined) return false;
  await ctx.storage.metadata.linkBlob?.(name, digest);
  req.resume();
  send(req, res, 201, {
    Location: `/v2/${name}/blobs/${digest}`,
    'Docker-Content-Digest': digest,
  });
  return true;
}
