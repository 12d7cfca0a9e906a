export {
  ErrorCode,
  LadingError,
  isLadingError,
  InvalidReferenceError,
  InvalidDigestError,
  DigestMismatchError,
  SizeMismatchError,
  LayerConsumedError,
  AbortedError,
  throwIfAborted,
  LocalPathError,
  fileSystemError,
} from './errors.js';
export type { LadingErrorOptions } from './errors.js';
export {
  parseDigest,
  isDigest,
  toDigest,
  digestAlgorithm,
  digestHex,
  createHasher,
  digestOf,
  HashingStream,
  VerifyingStream,
} from './digest.js';
export type { Digest, DigestAlgorithm, Hasher } from './digest.js';
export {
  MediaType,
  isIndexMediaType,
  isImageManifestMediaType,
  isManifestMediaType,
  isDockerMediaType,
  isGzipLayerMediaType,
} from './media-types.js';
export type { KnownMediaType, MediaTypeString } from './media-types.js';
export {
  zstdAvailable,
  isZstdLayerMediaType,
  layerCompressionOf,
  createDecompressor,
} from './compression.js';
export type { LayerCompression } from './compression.js';
export type {
  Platform,
  Descriptor,
  ImageManifest,
  IndexManifest,
  Manifest,
  History,
  RootFs,
  ContainerConfig,
  ConfigFile,
} from './wire.js';
export { BytesLayer, layerFromBytes } from './layer.js';
export { DescribedLayer } from './described-layer.js';
export type { Layer, BlobSource, LayerBytesOptions } from './layer.js';
export { isImageIndex } from './image.js';
export type { Image, ImageIndex, IndexChild, IndexEntryInput } from './image.js';
export { ProgressEmitter } from './progress.js';
export type { ProgressEvent, ProgressEvents, BlobKind } from './progress.js';
export type {
  Target,
  Mounter,
  BlobWriter,
  IoOptions,
  ResolveOptions,
  PreparedPush,
  PushPreparer,
  Retrier,
  TagPusher,
  BlobLender,
  BlobSink,
  SinkOpener,
} from './target.js';
export {
  parseReference,
  isValidReference,
  formatReference,
  withTag,
  withDigest,
  DOCKER_HUB,
  DOCKER_HUB_API,
  NAME_TOTAL_LENGTH_MAX,
} from './reference.js';
export type { Reference, ParseReferenceOptions } from './reference.js';
export {
  MAX_MANIFEST_SIZE,
  parseImageManifest,
  parseIndexManifest,
  parseManifest,
  parseConfigFile,
  readCapped,
} from './parse.js';
export type { ParsedManifest } from './parse.js';
export { MemoryTarget, memoryTarget } from './memory-target.js';
export { copy, successors, successorsOf, fetchVerified } from './copy.js';
export type { CopyOptions, CopyHookResult } from './copy.js';
export {
  parsePlatform,
  toPlatform,
  formatPlatform,
  platformMatches,
  platformNotFound,
  selectPlatform,
  PlatformNotFoundError,
} from './platform.js';
export type { ManifestLoader } from './platform.js';
// eslint-disable-next-line @typescript-eslint/no-deprecated -- kept for source compatibility
export { writeImage, writeImageIndex, writeIndex } from './write-image.js';
export type { WriteImageOptions } from './write-image.js';
export { emptyImage } from './empty.js';
export type { EmptyImageOptions } from './empty.js';
export {
  appendLayers,
  withConfig,
  withAnnotations,
  withCreated,
  withPlatform,
  withMediaTypeFamily,
  DEFAULT_CREATED_BY,
} from './mutate/image.js';
export type { Addendum } from './mutate/image.js';
export type { ConfigPatch } from './mutate/config.js';
export { familyOf, layerTypeFor } from './mutate/family.js';
export type { MediaTypeFamily } from './mutate/family.js';
export { encodeManifest, encodeConfig } from './mutate/serialize.js';
export { validateImage } from './mutate/validate.js';
export type { ValidateOptions } from './mutate/validate.js';
export { imageIndex } from './image-index.js';
export type { ImageIndexOptions } from './image-index.js';
