import type { Digest } from './digest.js';
import type { MediaTypeString } from './media-types.js';

/**
 * Platform describes the OS and CPU an image runs on.
 * @see https://github.com/opencontainers/image-spec/blob/main/image-index.md
 */
export type Platform = {
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
  features?: string[];
};

/**
 * Descriptor points at content by digest and size.
 * @see https://github.com/opencontainers/image-spec/blob/main/descriptor.md
 */
export type Descriptor = {
  mediaType: MediaTypeString;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  data?: string;
  platform?: Platform;
  artifactType?: string;
};

/**
 * ImageManifest is an OCI image manifest (or a Docker schema 2 manifest, which
 * has the same shape).
 * @see https://github.com/opencontainers/image-spec/blob/main/manifest.md
 */
export type ImageManifest = {
  schemaVersion: 2;
  mediaType?: MediaTypeString;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
};

/**
 * IndexManifest is an OCI image index (or a Docker manifest list).
 * @see https://github.com/opencontainers/image-spec/blob/main/image-index.md
 */
export type IndexManifest = {
  schemaVersion: 2;
  mediaType?: MediaTypeString;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
};

/** Manifest is either kind of manifest. */
export type Manifest = ImageManifest | IndexManifest;

/**
 * History is one entry of an image's build history.
 * @see https://github.com/opencontainers/image-spec/blob/main/config.md
 */
export type History = {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
};

/** RootFs lists the diffIds of an image's layers, in order. */
export type RootFs = {
  type: 'layers';
  diff_ids: Digest[];
};

/** ContainerConfig is the execution parameters of an image's config. */
export type ContainerConfig = {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  ArgsEscaped?: boolean;
  [key: string]: unknown;
};

/**
 * ConfigFile is an image configuration.
 * @see https://github.com/opencontainers/image-spec/blob/main/config.md
 */
export type ConfigFile = {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
  config?: ContainerConfig;
  rootfs: RootFs;
  history?: History[];
  [key: string]: unknown;
};
