import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  ErrorCode,
  HashingStream,
  LadingError,
  LocalPathError,
  fileSystemError,
  MediaType,
  digestOf,
  isDigest,
  isImageManifestMediaType,
  MAX_MANIFEST_SIZE,
  type ConfigFile,
  type Descriptor,
  type Digest,
  type ImageManifest,
  type IndexManifest,
  type IoOptions,
  type MediaTypeString,
} from '@lading/core';
import { normalizeRepoTag, type ArchiveImage } from '../docker-archive.js';
import { refNameAnnotation } from '../oci-layout.js';
import { invalid, jsonOf } from './archive-errors.js';
import { indexTar, resolveEntry, type TarEntry } from './tar.js';
import { codeOf } from './layout-files.js';

/** ArchiveBlob is a blob of a scanned archive: a byte range of the file, or bytes lading made. */
export type ArchiveBlob =
  | { readonly mediaType: MediaTypeString; readonly entry: TarEntry }
  | { readonly mediaType: MediaTypeString; readonly bytes: Buffer };

/** ScannedArchive is what one scan of an archive's headers and metadata finds. */
export type ScannedArchive = {
  readonly blobs: Map<Digest, ArchiveBlob>;
  /** refs maps RepoTags (normalized), OCI ref names and containerd names to manifests. */
  readonly refs: Map<string, Descriptor>;
  readonly images: ArchiveImage[];
};

type ManifestJsonItem = {
  Config: string;
  RepoTags: string[] | null;
  Layers: string[];
};

async function readRange(file: string, entry: TarEntry, length: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(Math.min(length, entry.size));
    await fh.read(buf, 0, buf.length, entry.offset);
    return buf;
  } finally {
    await fh.close();
  }
}

/** readEntry reads a metadata member whole. @throws MANIFEST_TOO_LARGE over 4 MiB */
async function readEntry(file: string, entry: TarEntry, what: string): Promise<Buffer> {
  if (entry.size > MAX_MANIFEST_SIZE) {
    throw new LadingError(ErrorCode.ManifestTooLarge, `${what} is over ${MAX_MANIFEST_SIZE} bytes`);
  }
  return readRange(file, entry, entry.size);
}

/** entryStream streams one member's bytes straight from the archive file. */
export function entryStream(file: string, entry: TarEntry, signal?: AbortSignal): Readable {
  if (entry.size === 0) return Readable.from([], { objectMode: false });
  return createReadStream(file, {
    start: entry.offset,
    end: entry.offset + entry.size - 1,
    signal,
  });
}

async function hashEntry(file: string, entry: TarEntry, signal?: AbortSignal): Promise<Digest> {
  const hashing = new HashingStream();
  await pipeline(
    entryStream(file, entry, signal),
    hashing,
    async (source: AsyncIterable<unknown>) => {
      for await (const _ of source) {
        // drain
      }
    },
  );
  if (hashing.digest === undefined) throw new LadingError(ErrorCode.Io, 'hash not computed');
  return hashing.digest;
}

async function indexArchive(file: string, options: IoOptions): Promise<Map<string, TarEntry>> {
  try {
    return await indexTar(file, options);
  } catch (err) {
    if (codeOf(err) === 'ENOENT') {
      throw new LocalPathError(ErrorCode.NotFound, `no such file: ${file}`, file, { cause: err });
    }
    throw fileSystemError(err, file);
  }
}

type OciImage = { readonly desc: Descriptor; readonly manifest: ImageManifest };

/**
 * scanOciLayout reads the OCI layout inside an archive (docker 25+, or any
 * oci-archive): it types the blobs index.json names, records their ref
 * names, and returns the image manifests.
 */
async function scanOciLayout(
  file: string,
  indexEntry: TarEntry,
  found: Pick<ScannedArchive, 'blobs' | 'refs'>,
): Promise<OciImage[]> {
  const { blobs, refs } = found;
  const ociImages: OciImage[] = [];
  const index = jsonOf(await readEntry(file, indexEntry, 'index.json'), 'index.json') as
    Partial<IndexManifest> | undefined;
  for (const d of Array.isArray(index?.manifests) ? index.manifests : []) {
    const blob = blobs.get(d.digest);
    if (blob === undefined || !('entry' in blob)) continue;
    blobs.set(d.digest, { mediaType: d.mediaType, entry: blob.entry });
    const { [refNameAnnotation]: refName, ['io.containerd.image.name']: fullName } =
      d.annotations ?? {};
    const { annotations: _a, ...plain } = d;
    if (refName !== undefined) refs.set(refName, plain);
    if (fullName !== undefined) refs.set(normalizeRepoTag(fullName), plain);
    if (isImageManifestMediaType(d.mediaType)) {
      const bytes = await readEntry(file, blob.entry, d.digest);
      const manifest = jsonOf(bytes, d.digest) as ImageManifest;
      ociImages.push({ desc: plain, manifest });
    }
  }
  return ociImages;
}

/**
 * synthesize makes the OCI manifest of a classic `manifest.json` item whose
 * image has no OCI manifest in the archive, and records its layers, config
 * and manifest as blobs.
 */
async function synthesize(
  file: string,
  entries: Map<string, TarEntry>,
  item: ManifestJsonItem,
  config: { readonly bytes: Buffer; readonly digest: Digest; readonly file: Partial<ConfigFile> },
  blobs: Map<Digest, ArchiveBlob>,
  options: IoOptions,
): Promise<Descriptor> {
  const diffIds = config.file.rootfs?.diff_ids ?? [];
  const layers: Descriptor[] = [];
  for (const [j, path] of item.Layers.entries()) {
    const entry = resolveEntry(entries, path);
    if (entry === undefined) throw invalid(file, `missing layer ${path}`);
    const fromPath = /(?:^|\/)blobs\/sha256\/([a-f0-9]{64})$/.exec(entry.name)?.[1];
    const head = await readRange(file, entry, 2);
    const gzip = head[0] === 0x1f && head[1] === 0x8b;
    // Synthesized manifests use OCI media types (as skopeo does when it
    // converts an archive): OCI layouts, umoci and oci-image-tool read
    // them, and registries take them.
    const mediaType = gzip ? MediaType.OciLayerGzip : MediaType.OciLayer;
    const known = fromPath === undefined ? undefined : (`sha256:${fromPath}` as Digest);
    const digest =
      known ?? (gzip ? undefined : diffIds[j]) ?? (await hashEntry(file, entry, options.signal));
    blobs.set(digest, { mediaType, entry });
    layers.push({ mediaType, digest, size: entry.size });
  }
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: config.digest, size: config.bytes.length },
    layers,
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const desc = { mediaType: MediaType.OciManifest, digest: digestOf(bytes), size: bytes.length };
  blobs.set(desc.digest, { mediaType: MediaType.OciManifest, bytes });
  blobs.set(config.digest, { mediaType: MediaType.OciConfig, bytes: config.bytes });
  return desc;
}

/**
 * scanArchive reads the headers of an uncompressed `docker save` tarball
 * once and its metadata members (manifest.json, configs, the OCI layout
 * inside), and returns where every blob is. Blobs are not read, except to
 * hash a classic layer whose diffId cannot name it (a gzipped one).
 * @throws NOT_FOUND (no file), INVALID_MANIFEST, UNSUPPORTED (compressed archive)
 */
export async function scanArchive(file: string, options: IoOptions): Promise<ScannedArchive> {
  const entries = await indexArchive(file, options);
  const blobs = new Map<Digest, ArchiveBlob>();
  const refs = new Map<string, Descriptor>();
  const images: ArchiveImage[] = [];
  for (const name of entries.keys()) {
    const m = /^blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(name);
    const digest = m === null ? undefined : `${m[1] ?? ''}:${m[2] ?? ''}`;
    const entry = resolveEntry(entries, name);
    if (digest !== undefined && isDigest(digest) && entry !== undefined) {
      blobs.set(digest, { mediaType: 'application/octet-stream', entry });
    }
  }
  const indexEntry = resolveEntry(entries, 'index.json');
  const ociImages =
    indexEntry === undefined ? [] : await scanOciLayout(file, indexEntry, { blobs, refs });
  const manifestJson = resolveEntry(entries, 'manifest.json');
  if (manifestJson === undefined) {
    if (indexEntry === undefined) {
      throw invalid(file, 'neither manifest.json nor index.json: not a docker archive');
    }
    for (const { desc } of ociImages) images.push({ manifest: desc, repoTags: [] });
    return { blobs, refs, images };
  }
  const items = jsonOf(await readEntry(file, manifestJson, 'manifest.json'), 'manifest.json');
  if (!Array.isArray(items)) throw invalid(file, 'manifest.json is not an array');
  for (const [i, item] of (items as Partial<ManifestJsonItem>[]).entries()) {
    if (typeof item.Config !== 'string' || !Array.isArray(item.Layers)) {
      throw invalid(file, `manifest.json[${i}] lacks Config or Layers`);
    }
    const configEntry = resolveEntry(entries, item.Config);
    if (configEntry === undefined) throw invalid(file, `missing config ${item.Config}`);
    const bytes = await readEntry(file, configEntry, item.Config);
    const config = {
      bytes,
      digest: digestOf(bytes),
      file: jsonOf(bytes, item.Config) as Partial<ConfigFile>,
    };
    const desc =
      ociImages.find((o) => o.manifest.config.digest === config.digest)?.desc ??
      (await synthesize(
        file,
        entries,
        { Config: item.Config, Layers: item.Layers, RepoTags: item.RepoTags ?? null },
        config,
        blobs,
        options,
      ));
    const repoTags = item.RepoTags ?? [];
    for (const tag of repoTags) refs.set(normalizeRepoTag(tag), desc);
    images.push({ manifest: desc, repoTags });
  }
  return { blobs, refs, images };
}
