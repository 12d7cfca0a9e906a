import { Readable } from 'node:stream';
import {
  MediaType,
  isManifestMediaType,
  layerFromBytes,
  successorsOf,
  type ConfigFile,
  type Descriptor,
  type Digest,
  type ImageManifest,
  type IndexManifest,
  type IoOptions,
  type MemoryTarget,
  type Platform,
  type Target,
} from '../src/index.js';

/** A tar-ish payload: tests only need distinct bytes per layer. */
export function tarBytes(label: string, size = 2048): Buffer {
  const b = Buffer.alloc(size);
  b.write(label);
  for (let i = label.length; i < size; i++) b[i] = (i * 31 + label.length) % 251;
  return b;
}

async function put(
  target: MemoryTarget,
  bytes: Uint8Array,
  mediaType: string,
): Promise<Descriptor> {
  return target.pushUnknown(Readable.from([Buffer.from(bytes)]), mediaType);
}

export type BuiltImage = { manifest: Descriptor; config: Descriptor; layers: Descriptor[] };

/** pushImage stores a small image (config + layers + manifest) in `target`. */
export async function pushImage(
  target: MemoryTarget,
  platform: Platform,
  layerLabels: string[],
): Promise<BuiltImage> {
  const layers: Descriptor[] = [];
  const diffIds: Digest[] = [];
  for (const label of layerLabels) {
    const layer = layerFromBytes(tarBytes(label));
    const desc = layer.knownDescriptor?.();
    if (desc === undefined) throw new Error('bytes layer without descriptor');
    await target.push(desc, layer.compressed());
    layers.push(desc);
    diffIds.push(await layer.diffId());
  }
  const configFile: ConfigFile = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant === undefined ? {} : { variant: platform.variant }),
    rootfs: { type: 'layers', diff_ids: diffIds },
  };
  const config = await put(target, Buffer.from(JSON.stringify(configFile)), MediaType.OciConfig);
  const m: ImageManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers };
  const manifest = await put(target, Buffer.from(JSON.stringify(m)), MediaType.OciManifest);
  return { manifest: { ...manifest, platform }, config, layers };
}

/** pushIndex stores an index over `images` in `target`. */
export async function pushIndex(target: MemoryTarget, images: BuiltImage[]): Promise<Descriptor> {
  const index: IndexManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: images.map((i) => i.manifest),
  };
  return put(target, Buffer.from(JSON.stringify(index)), MediaType.OciIndex);
}

/** FlakyTarget forwards to `inner` but fails every push after the first `okPushes`. */
export class FlakyTarget implements Target {
  readonly inner: MemoryTarget;
  okPushes: number;
  /** pushes counts successful pushes; attempts counts every push started. */
  pushes = 0;
  attempts = 0;
  constructor(inner: MemoryTarget, okPushes: number) {
    this.inner = inner;
    this.okPushes = okPushes;
  }
  resolve(ref: string, o?: IoOptions) {
    return this.inner.resolve(ref, o);
  }
  fetch(d: Descriptor, o?: IoOptions) {
    return this.inner.fetch(d, o);
  }
  exists(d: Descriptor, o?: IoOptions) {
    return this.inner.exists(d, o);
  }
  async push(d: Descriptor, content: Readable, o?: IoOptions) {
    if (this.attempts >= this.okPushes) {
      content.destroy();
      throw new Error('injected push failure');
    }
    this.attempts++;
    await this.inner.push(d, content, o);
    this.pushes++;
  }
  tag(d: Descriptor, ref: string, o?: IoOptions) {
    return this.inner.tag(d, ref, o);
  }
}

/** RecordingTarget forwards to `inner`, recording the order of pushes and the peak concurrency. */
export class RecordingTarget implements Target {
  readonly inner: MemoryTarget;
  readonly pushed: Digest[] = [];
  readonly fetched: Digest[] = [];
  active = 0;
  peak = 0;
  readonly delayMs: number;
  constructor(inner: MemoryTarget, delayMs = 0) {
    this.inner = inner;
    this.delayMs = delayMs;
  }
  resolve(ref: string, o?: IoOptions) {
    return this.inner.resolve(ref, o);
  }
  fetch(d: Descriptor, o?: IoOptions) {
    this.fetched.push(d.digest);
    return this.inner.fetch(d, o);
  }
  exists(d: Descriptor, o?: IoOptions) {
    return this.inner.exists(d, o);
  }
  async push(d: Descriptor, content: Readable, o?: IoOptions) {
    this.active++;
    this.peak = Math.max(this.peak, this.active);
    try {
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      await this.inner.push(d, content, o);
      this.pushed.push(d.digest);
    } finally {
      this.active--;
    }
  }
  tag(d: Descriptor, ref: string, o?: IoOptions) {
    return this.inner.tag(d, ref, o);
  }
}

/**
 * danglingChildren lists what breaks the invariant an interrupted copy must
 * keep (every manifest stored in `target` has all of its children stored
 * too): the children that are missing, none when it holds.
 */
export async function danglingChildren(target: MemoryTarget): Promise<string[]> {
  const missing: string[] = [];
  for (const digest of target.digests()) {
    const bytes = target.bytes(digest);
    if (bytes === undefined) continue;
    let mediaType: unknown;
    try {
      mediaType = (JSON.parse(Buffer.from(bytes).toString('utf8')) as { mediaType?: unknown })
        .mediaType;
    } catch {
      continue;
    }
    if (typeof mediaType !== 'string' || !isManifestMediaType(mediaType)) continue;
    for (const child of successorsOf(bytes, { mediaType, digest, size: bytes.length })) {
      if (!(await target.exists(child))) missing.push(`${digest} -> ${child.digest}`);
    }
  }
  return missing;
}
