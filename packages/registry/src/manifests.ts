import { createHash } from 'node:crypto';
import { digestAlgorithm, type Descriptor, type Digest } from '@lading/core';
import { visibleBlobSize } from './blobs.js';
import { HttpError, SpecErrorCode } from './errors.js';
import type { Call, RegistryContext } from './internal/context.js';
import { contentLength, parseDigestParam, readCapped, send } from './internal/http.js';
import { parseManifest, referrerDescriptor } from './internal/manifest.js';
import { isTag } from './names.js';

// Manifests: GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>, and tags.

// MANIFEST_UNKNOWN even for an unknown repository, as CNCF distribution
// answers (clients map it to "not found"; tags/list says NAME_UNKNOWN).
function manifestUnknown(name: string, ref: string): HttpError {
  return new HttpError(404, SpecErrorCode.ManifestUnknown, undefined, { name, reference: ref });
}

/** resolve turns a tag or digest reference into the manifest's digest. */
async function resolve(ctx: RegistryContext, name: string, ref: string): Promise<Digest> {
  let digest: Digest | undefined;
  if (ref.includes(':')) digest = parseDigestParam(ref);
  else if (isTag(ref)) digest = await ctx.storage.metadata.resolveTag(name, ref);
  if (digest === undefined) throw manifestUnknown(name, ref);
  return digest;
}

/**
 * getManifest answers GET and HEAD with the manifest exactly as pushed.
 * @throws HttpError 404 MANIFEST_UNKNOWN
 */
export async function getManifest(call: Call, name: string, ref: string): Promise<void> {
  const { ctx, req, res } = call;
  const digest = await resolve(ctx, name, ref);
  const m = await ctx.storage.metadata.getManifest(name, digest);
  if (m === undefined) throw manifestUnknown(name, ref);
  send(
    req,
    res,
    200,
    {
      'Content-Type': m.mediaType,
      'Docker-Content-Digest': digest,
      'Content-Length': m.bytes.length,
      ETag: `"${digest}"`,
    },
    m.bytes,
  );
}

/**
 * putManifest answers PUT: checks the manifest and everything it refers
 * to, stores it and points the tag (or the `?tag=` list) at it.
 * @throws HttpError 400 MANIFEST_INVALID, MANIFEST_BLOB_UNKNOWN, DIGEST_INVALID, SIZE_INVALID; 413 past maxManifest; 405 read-only
 */
export async function putManifest(call: Call, name: string, ref: string): Promise<void> {
  const { ctx, req, res, query } = call;
  const meta = ctx.storage.metadata;
  if (meta.putManifest === undefined || meta.putTag === undefined) {
    throw new HttpError(405, SpecErrorCode.Unsupported, 'this registry is read-only');
  }
  const byDigest = ref.includes(':');
  const refDigest = byDigest ? parseDigestParam(ref) : undefined;
  if (!byDigest && !isTag(ref)) {
    throw new HttpError(400, SpecErrorCode.ManifestInvalid, 'invalid tag', { tag: ref });
  }
  const extraTags = byDigest ? query.getAll('tag') : [];
  for (const t of extraTags) {
    if (!isTag(t))
      throw new HttpError(400, SpecErrorCode.ManifestInvalid, 'invalid tag', { tag: t });
  }
  const tooLarge = (): HttpError =>
    new HttpError(413, SpecErrorCode.ManifestInvalid, 'manifest too large', {
      limit: ctx.maxManifest,
    });
  const declared = contentLength(req);
  if (declared !== undefined && declared > ctx.maxManifest) throw tooLarge();
  const bytes = await readCapped(req, ctx.maxManifest, tooLarge);
  if (declared !== undefined && bytes.length !== declared) {
    throw new HttpError(400, SpecErrorCode.SizeInvalid, 'body shorter than declared');
  }
  const parsed = parseManifest(bytes, req.headers['content-type']);
  const algorithm = refDigest === undefined ? 'sha256' : digestAlgorithm(refDigest);
  const digest = `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}` as Digest;
  if (refDigest !== undefined && refDigest !== digest) {
    throw new HttpError(400, SpecErrorCode.DigestInvalid, 'manifest digest does not match', {
      expected: refDigest,
      actual: digest,
    });
  }
  await checkReferences(ctx, name, parsed.blobs, parsed.children);
  await meta.putManifest(name, {
    digest,
    bytes,
    mediaType: parsed.mediaType,
    subject: parsed.subject?.digest,
    referrer: referrerDescriptor(parsed, digest, bytes.length),
  });
  if (!byDigest) await meta.putTag(name, ref, digest);
  for (const t of extraTags) await meta.putTag(name, t, digest);
  const headers: Record<string, string | string[]> = {
    Location: `/v2/${name}/manifests/${digest}`,
    'Docker-Content-Digest': digest,
  };
  if (parsed.subject !== undefined) headers['OCI-Subject'] = parsed.subject.digest;
  if (extraTags.length > 0) headers['OCI-Tag'] = extraTags;
  send(req, res, 201, headers);
}

/**
 * checkReferences makes sure every blob and child manifest a manifest
 * names is in `name`, with the size its descriptor says.
 * @throws HttpError 400 MANIFEST_BLOB_UNKNOWN for missing ones, 400 MANIFEST_INVALID for a size mismatch
 */
async function checkReferences(
  ctx: RegistryContext,
  name: string,
  blobs: Descriptor[],
  children: Descriptor[],
): Promise<void> {
  const missing: Digest[] = [];
  const mismatch = (d: Descriptor, what: string, actual: number): HttpError =>
    new HttpError(
      400,
      SpecErrorCode.ManifestInvalid,
      `descriptor size does not match the ${what}`,
      {
        digest: d.digest,
        declared: d.size,
        actual,
      },
    );
  for (const d of blobs) {
    const size = await visibleBlobSize(ctx, name, d.digest);
    if (size === undefined) missing.push(d.digest);
    else if (size !== d.size) throw mismatch(d, 'blob', size);
  }
  for (const d of children) {
    const m = await ctx.storage.metadata.getManifest(name, d.digest);
    if (m === undefined) missing.push(d.digest);
    else if (m.bytes.length !== d.size) throw mismatch(d, 'manifest', m.bytes.length);
  }
  if (missing.length > 0) {
    throw new HttpError(400, SpecErrorCode.ManifestBlobUnknown, undefined, {
      digest: missing[0],
      missing,
    });
  }
}

/**
 * deleteManifest answers DELETE: by digest, the manifest (with its tags and
 * referrers entry); by tag, the tag alone.
 * @throws HttpError 405 UNSUPPORTED when deletes are off; 404 MANIFEST_UNKNOWN
 */
export async function deleteManifest(call: Call, name: string, ref: string): Promise<void> {
  const { ctx, req, res } = call;
  const meta = ctx.storage.metadata;
  if (!ctx.deleteEnabled || meta.deleteManifest === undefined || meta.deleteTag === undefined) {
    throw new HttpError(405, SpecErrorCode.Unsupported, 'deletion is disabled');
  }
  let ok: boolean;
  if (ref.includes(':')) ok = await meta.deleteManifest(name, parseDigestParam(ref));
  else ok = isTag(ref) && (await meta.deleteTag(name, ref));
  if (!ok) throw manifestUnknown(name, ref);
  send(req, res, 202, {});
}
