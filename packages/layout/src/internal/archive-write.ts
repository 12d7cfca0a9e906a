import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  DigestMismatchError,
  ErrorCode,
  LadingError,
  MediaType,
  digestHex,
  digestOf,
  isImageManifestMediaType,
  successorsOf,
} from '@lading/core';
import type {
  ConfigFile,
  Descriptor,
  Digest,
  ImageManifest,
  IndexManifest,
  IoOptions,
  MediaTypeString,
} from '@lading/core';
import { isLayerMediaType, tarPadding, tarTrailer, writeOutputFile } from '@lading/core/internal';
import { refNameAnnotation } from '../oci-layout.js';
import { jsonOf, notFound } from './archive-errors.js';
import { tarEntry, tarHeader } from './tar.js';

/** Spooled is a pushed layer, gunzipped into a temp file until the archive is written. */
export type Spooled = {
  readonly path: string;
  readonly diffId: Digest;
  readonly size: number;
  readonly mediaType: MediaTypeString;
};

/** SmallBlob is a pushed config or manifest, kept in memory. */
export type SmallBlob = { readonly bytes: Buffer; readonly mediaType: MediaTypeString };

/** PlannedImage is one image of the archive to write: a manifest.json item. */
export type PlannedImage = {
  readonly configName: string;
  readonly config: Buffer;
  readonly layers: readonly Spooled[];
  readonly tags: readonly string[];
};

/** fullName expands a RepoTag to the fully qualified name containerd records. */
function fullName(repoTag: string): string {
  const first = repoTag.split('/')[0] ?? '';
  const hasHost =
    repoTag.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (hasHost) return repoTag;
  return repoTag.includes('/') ? `docker.io/${repoTag}` : `docker.io/library/${repoTag}`;
}

function hasSubject(bytes: Uint8Array): boolean {
  return (
    (JSON.parse(Buffer.from(bytes).toString('utf8')) as { subject?: unknown }).subject !== undefined
  );
}

/**
 * planArchive turns everything pushed into the archive's images: every
 * pushed image manifest, with its config, its spooled layers and the tags
 * that point at it.
 * @throws NOT_FOUND (a config or layer never pushed), DIGEST_MISMATCH (a
 *   layer's diffId is not the config's)
 */
export function planArchive(
  small: ReadonlyMap<Digest, SmallBlob>,
  layers: ReadonlyMap<Digest, Spooled>,
  tags: ReadonlyMap<string, Digest>,
): PlannedImage[] {
  const planned: PlannedImage[] = [];
  const tagsOf = new Map<Digest, string[]>();
  for (const [tag, digest] of tags) tagsOf.set(digest, [...(tagsOf.get(digest) ?? []), tag]);
  for (const [digest, blob] of small) {
    if (!isImageManifestMediaType(blob.mediaType)) continue;
    const desc: Descriptor = { mediaType: blob.mediaType, digest, size: blob.bytes.length };
    // config, layers, then the subject when there is one (not a layer)
    const [configDesc, ...rest] = successorsOf(blob.bytes, desc);
    if (configDesc === undefined) continue;
    const layerDescs = hasSubject(blob.bytes) ? rest.slice(0, -1) : rest;
    for (const l of layerDescs)
      if (!isLayerMediaType(l.mediaType))
        throw new LadingError(
          ErrorCode.UnsupportedMediaType,
          `layer ${l.digest} of ${digest} is ${JSON.stringify(l.mediaType)}: a docker archive holds tar layers only`,
        );
    const config = small.get(configDesc.digest);
    if (config === undefined) throw notFound(`config ${configDesc.digest} of ${digest}`);
    const configFile = jsonOf(config.bytes, configDesc.digest) as Partial<ConfigFile>;
    const diffIds = configFile.rootfs?.diff_ids ?? [];
    planned.push({
      configName: `${digestHex(configDesc.digest)}.json`,
      config: config.bytes,
      layers: layerDescs.map((l, i) => {
        const spooled = layers.get(l.digest);
        if (spooled === undefined) throw notFound(`layer ${l.digest} of ${digest}`);
        const want = diffIds[i];
        if (want !== spooled.diffId) {
          throw new DigestMismatchError(want ?? '(none)', spooled.diffId, `diffId of layer ${i}`, {
            diffId: true,
          });
        }
        return spooled;
      }),
      tags: tagsOf.get(digest) ?? [],
    });
  }
  return planned;
}

const layerPath = (l: Spooled): string => `${digestHex(l.diffId)}/layer.tar`;

/** classicPart is the `docker save` part: layer.tar files, configs, manifest.json. */
async function* classicPart(
  planned: readonly PlannedImage[],
  signal: AbortSignal | undefined,
): AsyncGenerator<Buffer> {
  const written = new Set<string>();
  for (const image of planned) {
    for (const layer of image.layers) {
      const hex = digestHex(layer.diffId);
      if (written.has(hex)) continue;
      written.add(hex);
      const { size } = await stat(layer.path);
      if (size !== layer.size) throw new LadingError(ErrorCode.Io, `spooled layer ${hex} changed`);
      yield tarHeader(`${hex}/`, 0, 'directory');
      yield tarHeader(layerPath(layer), size);
      for await (const chunk of createReadStream(layer.path, { signal })) yield chunk as Buffer;
      yield Buffer.alloc(tarPadding(size));
    }
    if (!written.has(image.configName)) {
      written.add(image.configName);
      yield* tarEntry(image.configName, image.config);
    }
  }
  const manifest = planned.map((p) => ({
    Config: p.configName,
    RepoTags: p.tags,
    Layers: p.layers.map(layerPath),
  }));
  yield* tarEntry('manifest.json', Buffer.from(JSON.stringify(manifest)));
}

/**
 * ociPart is the OCI layout docker 25+ adds, without a second copy of the
 * data: blobs/ entries are hardlinks to the layer.tar and config files.
 */
function* ociPart(planned: readonly PlannedImage[]): Generator<Buffer> {
  yield tarHeader('blobs/', 0, 'directory');
  yield tarHeader('blobs/sha256/', 0, 'directory');
  const index: IndexManifest = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
  const linked = new Set<string>();
  for (const p of planned) {
    const configHex = p.configName.slice(0, -'.json'.length);
    const links = [
      [configHex, p.configName],
      ...p.layers.map((l) => [digestHex(l.diffId), layerPath(l)]),
    ] as const;
    for (const [hex, target] of links) {
      if (linked.has(hex)) continue;
      linked.add(hex);
      yield tarHeader(`blobs/sha256/${hex}`, 0, 'hardlink', target);
    }
    const oci: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: {
        mediaType: MediaType.OciConfig,
        digest: `sha256:${configHex}`,
        size: p.config.length,
      },
      layers: p.layers.map((l) => ({
        mediaType: MediaType.OciLayer,
        digest: l.diffId,
        size: l.size,
      })),
    };
    const bytes = Buffer.from(JSON.stringify(oci));
    const digest = digestOf(bytes);
    if (!linked.has(digestHex(digest))) {
      linked.add(digestHex(digest));
      yield* tarEntry(`blobs/sha256/${digestHex(digest)}`, bytes);
    }
    const desc: Descriptor = { mediaType: MediaType.OciManifest, digest, size: bytes.length };
    if (p.tags.length === 0) index.manifests.push(desc);
    for (const t of p.tags) {
      index.manifests.push({
        ...desc,
        annotations: {
          'io.containerd.image.name': fullName(t),
          [refNameAnnotation]: t.slice(t.lastIndexOf(':') + 1),
        },
      });
    }
  }
  yield* tarEntry('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
  yield* tarEntry('index.json', Buffer.from(JSON.stringify(index)));
}

/** repositoriesFile is the legacy `repositories` member: repo → tag → top layer id. */
function repositoriesFile(planned: readonly PlannedImage[]): Buffer {
  const repositories: Record<string, Record<string, string>> = {};
  for (const p of planned) {
    const top = p.layers.at(-1);
    if (top === undefined) continue;
    for (const t of p.tags) {
      const colon = t.lastIndexOf(':');
      const repo = t.slice(0, colon);
      repositories[repo] = { ...repositories[repo], [t.slice(colon + 1)]: digestHex(top.diffId) };
    }
  }
  return Buffer.from(JSON.stringify(repositories));
}

async function* archiveChunks(
  planned: readonly PlannedImage[],
  signal: AbortSignal | undefined,
): AsyncGenerator<Buffer> {
  yield* classicPart(planned, signal);
  yield* ociPart(planned);
  yield* tarEntry('repositories', repositoriesFile(planned));
  yield tarTrailer;
}

/**
 * writeArchiveFile writes the archive of `planned` images to a temp file
 * next to `file` and renames it into place: `<diffId-hex>/layer.tar`,
 * `<config-hex>.json`, `manifest.json`, the OCI layout docker 25+ adds
 * (hardlinks, no second copy) and `repositories`, the form every
 * `docker load` accepts. A failure leaves `file` as it was. A device or
 * FIFO at `file` is written through, a symlink followed (core's
 * writeOutputFile).
 */
export async function writeArchiveFile(
  file: string,
  planned: readonly PlannedImage[],
  options: IoOptions,
): Promise<void> {
  await writeOutputFile(
    file,
    Readable.from(archiveChunks(planned, options.signal)),
    options.signal,
  );
}
