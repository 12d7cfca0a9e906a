import {
  DigestMismatchError,
  ErrorCode,
  LadingError,
  MAX_MANIFEST_SIZE,
  MediaType,
  digestOf,
  isDigest,
  type Digest,
  type MediaTypeString,
} from '@lading/core';
import { discard, header, readWhole, type SendResponse } from './transport/index.js';

/** FetchedManifest is a manifest read from a registry, verified. */
export type FetchedManifest = {
  readonly bytes: Buffer;
  readonly mediaType: MediaTypeString;
  readonly digest: Digest;
  readonly size: number;
};

function mediaTypeOf(bytes: Buffer, headerType: string | undefined): MediaTypeString {
  try {
    const parsed = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
    if (typeof parsed.mediaType === 'string' && parsed.mediaType !== '') return parsed.mediaType;
  } catch {
    // the caller validates the JSON; the header is the fallback
  }
  return headerType?.split(';')[0]?.trim() ?? MediaType.OciManifest;
}

/**
 * readManifest reads a manifest response capped at 4 MiB and verifies it
 * against `expected` (the reference, when it is a digest) or else the
 * registry's `Docker-Content-Digest`, hashing with the algorithm of the
 * digest it checks against.
 * @throws MANIFEST_TOO_LARGE, DIGEST_MISMATCH; NETWORK when the connection
 *   drops before the end (temporary: a retry reads it again); ABORTED
 */
export async function readManifest(
  res: SendResponse,
  name: string,
  expected: Digest | undefined,
  signal?: AbortSignal,
): Promise<FetchedManifest> {
  const length = Number(header(res.headers, 'content-length') ?? '0');
  if (length > MAX_MANIFEST_SIZE) {
    discard(res.body);
    throw new LadingError(
      ErrorCode.ManifestTooLarge,
      `manifest ${name} is ${length} bytes (limit ${MAX_MANIFEST_SIZE})`,
    );
  }
  const bytes = await readWhole(
    res.body,
    MAX_MANIFEST_SIZE,
    { method: 'GET', url: res.url },
    signal,
  );
  const sent = header(res.headers, 'docker-content-digest');
  const want = expected ?? (sent !== undefined && isDigest(sent) ? sent : undefined);
  const digest = digestOf(bytes, want?.startsWith('sha512:') === true ? 'sha512' : 'sha256');
  if (want !== undefined && want !== digest) {
    throw new DigestMismatchError(want, digest, `manifest ${name}`);
  }
  return {
    bytes,
    mediaType: mediaTypeOf(bytes, header(res.headers, 'content-type')),
    digest,
    size: bytes.length,
  };
}
