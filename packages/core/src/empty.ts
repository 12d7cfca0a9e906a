import { digestOf, type Digest } from './digest.js';
import type { Image } from './image.js';
import type { Layer } from './layer.js';
import { checkPlatform, applyPlatform } from './mutate/config.js';
import {
  checkFamily,
  configTypeFor,
  manifestTypeFor,
  type MediaTypeFamily,
} from './mutate/family.js';
import { encodeConfig, encodeManifest } from './mutate/serialize.js';
import { MediaType, type MediaTypeString } from './media-types.js';
import type { ConfigFile, Descriptor, ImageManifest, Platform } from './wire.js';

/** EmptyImageOptions configure {@link emptyImage}. */
export interface EmptyImageOptions {
  /** mediaTypeFamily picks OCI (default) or Docker schema 2 media types. */
  readonly mediaTypeFamily?: MediaTypeFamily;
  /** platform of the image; `linux/amd64` unless set. */
  readonly platform?: Platform;
}

/** EmptyImage is an image with no layers and a minimal config; the usual base of a build. */
class EmptyImage implements Image {
  readonly mediaType: MediaTypeString;
  readonly #rawConfig: Uint8Array;
  readonly #rawManifest: Uint8Array;
  readonly #configDescriptor: Descriptor;

  constructor(family: MediaTypeFamily, platform: Platform) {
    this.mediaType = manifestTypeFor(family);
    const cfg: ConfigFile = {
      architecture: '',
      os: '',
      config: {},
      rootfs: { type: 'layers', diff_ids: [] },
    };
    applyPlatform(cfg, platform);
    this.#rawConfig = encodeConfig(cfg);
    this.#configDescriptor = {
      mediaType: configTypeFor(MediaType.OciConfig, family),
      digest: digestOf(this.#rawConfig),
      size: this.#rawConfig.length,
    };
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: this.mediaType,
      config: this.#configDescriptor,
      layers: [],
    };
    this.#rawManifest = encodeManifest(manifest);
  }

  manifest(): Promise<ImageManifest> {
    return Promise.resolve(JSON.parse(Buffer.from(this.#rawManifest).toString()) as ImageManifest);
  }
  rawManifest(): Promise<Uint8Array> {
    return Promise.resolve(this.#rawManifest.slice());
  }
  configFile(): Promise<ConfigFile> {
    return Promise.resolve(JSON.parse(Buffer.from(this.#rawConfig).toString()) as ConfigFile);
  }
  rawConfig(): Promise<Uint8Array> {
    return Promise.resolve(this.#rawConfig.slice());
  }
  configDescriptor(): Promise<Descriptor> {
    return Promise.resolve({ ...this.#configDescriptor });
  }
  digest(): Promise<Digest> {
    return Promise.resolve(digestOf(this.#rawManifest));
  }
  size(): Promise<number> {
    return Promise.resolve(this.#rawManifest.length);
  }
  layers(): Promise<readonly Layer[]> {
    return Promise.resolve([]);
  }
}

/**
 * emptyImage returns an image with no layers: OCI media types unless asked
 * otherwise, a config for linux/amd64 (or `platform`) with an empty rootfs,
 * no `created` time and no history, so its digest never changes.
 * @throws INVALID_ARGUMENT for a malformed platform.
 */
export function emptyImage(options: EmptyImageOptions = {}): Image {
  const family = checkFamily(options.mediaTypeFamily ?? 'oci');
  const platform = checkPlatform(options.platform ?? { architecture: 'amd64', os: 'linux' });
  return new EmptyImage(family, platform);
}
