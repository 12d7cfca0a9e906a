import { isDigest, MediaType, type Descriptor, type Digest } from '@lading/core';
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

const imageTypes = new Set<string>([MediaType.OciManifest, MediaType.DockerManifest]);
const indexTypes = new Set<string>([MediaType.OciIndex, MediaType.DockerManifestList]);

function invalid(message: string): HttpError {
  return new HttpError(400, SpecErrorCode.ManifestInvalid, message);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function annotationsOf(v: unknown, where: string): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (!isRecord(v)) throw invalid(`${where}.annotations must be an object`);
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw invalid(`${where}.annotations[${k}] must be a string`);
  }
  return v as Record<string, string>;
}

function descriptorOf(v: unknown, where: string): Descriptor {
  if (!isRecord(v)) throw invalid(`${where} must be a descriptor object`);
  const { mediaType, digest, size } = v;
  if (typeof mediaType !== 'string' || mediaType === '')
    throw invalid(`${where}.mediaType must be a non-empty string`);
  if (!isDigest(digest)) throw invalid(`${where}.digest is not a valid digest`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
    throw invalid(`${where}.size must be a non-negative integer`);
  if (v.urls !== undefined && !Array.isArray(v.urls))
    throw invalid(`${where}.urls must be an array`);
  annotationsOf(v.annotations, where);
  return v as unknown as Descriptor;
}

/** normalizeContentType drops parameters (`; charset=…`) from a Content-Type. */
export function normalizeContentType(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const t = header.split(';')[0]?.trim().toLowerCase();
  return t === undefined || t === '' ? undefined : t;
}

/**
 * parseManifest validates a pushed manifest (OCI/Docker image manifest or
 * index) just enough to store it safely: JSON object, schemaVersion 2,
 * well-formed descriptors, a `mediaType` that agrees with the Content-Type.
 * @throws HttpError 400 MANIFEST_INVALID
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined): ParsedManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw invalid('manifest is not valid JSON');
  }
  if (!isRecord(doc)) throw invalid('manifest must be a JSON object');
  if (doc.schemaVersion !== 2) throw invalid('schemaVersion must be 2');
  const declared = doc.mediaType;
  if (declared !== undefined && typeof declared !== 'string')
    throw invalid('mediaType must be a string');
  const ct = contentType === 'application/octet-stream' ? undefined : contentType;
  if (declared !== undefined && ct !== undefined && declared !== ct) {
    throw invalid(`Content-Type ${ct} does not match the manifest's mediaType ${declared}`);
  }
  let mediaType = ct ?? declared;
  if (mediaType === undefined) {
    if (Array.isArray(doc.manifests)) mediaType = MediaType.OciIndex;
    else if (doc.config !== undefined) mediaType = MediaType.OciManifest;
    else throw invalid('cannot tell the manifest type: no Content-Type and no mediaType');
  }
  const artifactType = doc.artifactType;
  if (artifactType !== undefined && typeof artifactType !== 'string')
    throw invalid('artifactType must be a string');
  const subject = doc.subject === undefined ? undefined : descriptorOf(doc.subject, 'subject');
  const annotations = annotationsOf(doc.annotations, 'manifest');

  if (imageTypes.has(mediaType)) {
    const config = descriptorOf(doc.config, 'config');
    const layersRaw = doc.layers;
    if (!Array.isArray(layersRaw)) throw invalid('layers must be an array');
    const layers = layersRaw.map((l, i) => descriptorOf(l, `layers[${i}]`));
    // Foreign / non-distributable layers with urls are fetched from elsewhere.
    const blobs = [config, ...layers.filter((l) => l.urls === undefined || l.urls.length === 0)];
    return {
      kind: 'image',
      mediaType,
      blobs,
      children: [],
      subject,
      artifactType,
      annotations,
      configMediaType: config.mediaType,
    };
  }
  if (indexTypes.has(mediaType)) {
    const raw = doc.manifests;
    if (!Array.isArray(raw)) throw invalid('manifests must be an array');
    const children = raw.map((m, i) => descriptorOf(m, `manifests[${i}]`));
    return { kind: 'index', mediaType, blobs: [], children, subject, artifactType, annotations };
  }
  throw invalid(`unsupported manifest media type ${JSON.stringify(mediaType)}`);
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
