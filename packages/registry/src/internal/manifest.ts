import {
  ErrorCode,
  isLadingError,
  parseManifest as parseCoreManifest,
  type Descriptor,
  type Digest,
  type ParsedManifest as CoreParsedManifest,
} from '@lading/core';
import { HttpError, SpecErrorCode } from '../errors.js';

/** ParsedManifest is what the registry needs to know about a pushed manifest. */
export interface ParsedManifest {
  readonly kind: 'image' | 'index';
  readonly mediaType: string;
  /** blobs are config + layers of an image manifest (must exist in the repository). */
  readonly blobs: Descriptor[];
  /** children are the manifests an index lists (must exist in the repository). */
  readonly children: Descriptor[];
  readonly subject?: Descriptor | undefined;
  readonly artifactType?: string | undefined;
  readonly annotations?: Record<string, string> | undefined;
  readonly configMediaType?: string | undefined;
}

/**
 * parseManifest validates a pushed manifest (OCI/Docker image manifest or
 * index) with core's parser — UTF-8 JSON object, schemaVersion 2,
 * well-formed descriptors, a `mediaType` that agrees with the Content-Type —
 * and extracts what the registry checks and indexes.
 * @throws HttpError 400 MANIFEST_INVALID; 413 MANIFEST_INVALID over the 4 MiB cap
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined): ParsedManifest {
  let parsed: CoreParsedManifest;
  try {
    parsed = parseCoreManifest(bytes, contentType);
  } catch (err) {
    if (isLadingError(err, ErrorCode.ManifestTooLarge)) {
      throw new HttpError(413, SpecErrorCode.ManifestInvalid, err.message);
    }
    if (isLadingError(err)) throw new HttpError(400, SpecErrorCode.ManifestInvalid, err.message);
    throw err;
  }
  const m = parsed.manifest;
  const common = {
    mediaType: parsed.mediaType,
    subject: m.subject,
    artifactType: m.artifactType,
    annotations: m.annotations,
  };
  if (parsed.kind === 'image') {
    const { config, layers } = parsed.manifest;
    // Foreign / non-distributable layers with urls are fetched from elsewhere.
    const blobs = [config, ...layers.filter((l) => l.urls === undefined || l.urls.length === 0)];
    return { kind: 'image', blobs, children: [], configMediaType: config.mediaType, ...common };
  }
  return { kind: 'index', blobs: [], children: parsed.manifest.manifests, ...common };
}

/** referrerDescriptor is the descriptor the referrers API lists for a manifest. */
export function referrerDescriptor(
  parsed: ParsedManifest,
  digest: Digest,
  size: number,
): Descriptor {
  const d: Descriptor = { mediaType: parsed.mediaType, digest, size };
  const artifactType =
    parsed.artifactType !== undefined && parsed.artifactType !== ''
      ? parsed.artifactType
      : parsed.configMediaType;
  if (artifactType !== undefined) d.artifactType = artifactType;
  if (parsed.annotations !== undefined) d.annotations = parsed.annotations;
  return d;
}
