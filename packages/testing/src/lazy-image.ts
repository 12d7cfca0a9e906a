import {
  MediaType,
  digestOf,
  type ConfigFile,
  type Descriptor,
  type Image,
  type ImageManifest,
  type Layer,
  type Platform,
} from '@lading/core';

/**
 * lazyImage is a minimal Image over `layers` whose values may still be
 * pending (a {@link OnceLayer}): the config (platform, `Cmd ["/bin/sh"]`,
 * one history entry per layer) and the manifest are built only when asked
 * for. `mediaType` may be the Docker manifest type, which makes the config
 * Docker's too.
 */
export function lazyImage(
  layers: Layer[],
  platform: Platform = { os: 'linux', architecture: 'amd64' },
  mediaType: string = MediaType.OciManifest,
): Image {
  const docker = mediaType === MediaType.DockerManifest;
  const rawConfig = async () => {
    const cfg: ConfigFile = {
      ...platform,
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: await Promise.all(layers.map((l) => l.diffId())) },
      history: layers.map(() => ({ created_by: 'lading test' })),
    };
    return Buffer.from(JSON.stringify(cfg));
  };
  const configDescriptor = async (): Promise<Descriptor> => {
    const raw = await rawConfig();
    return {
      mediaType: docker ? MediaType.DockerConfig : MediaType.OciConfig,
      digest: digestOf(raw),
      size: raw.length,
    };
  };
  const manifest = async (): Promise<ImageManifest> => ({
    schemaVersion: 2,
    mediaType,
    config: await configDescriptor(),
    layers: await Promise.all(
      layers.map(async (l) => ({
        mediaType: l.mediaType,
        digest: await l.digest(),
        size: await l.size(),
      })),
    ),
  });
  const rawManifest = async () => Buffer.from(JSON.stringify(await manifest()));
  return {
    mediaType,
    manifest,
    rawManifest,
    configFile: async () => JSON.parse((await rawConfig()).toString()) as ConfigFile,
    rawConfig,
    configDescriptor,
    digest: async () => digestOf(await rawManifest()),
    size: async () => (await rawManifest()).length,
    layers: () => Promise.resolve(layers),
  };
}
