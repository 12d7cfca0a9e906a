export {
  createGzipStream,
  resolveCompression,
  crc32,
  gzipBlockSize,
  defaultGzipLevel,
  defaultZstdLevel,
} from './compression.js';
export type { CompressionOptions, ResolvedCompression } from './compression.js';
export type { Crc32 } from './internal/crc32.js';
export { StreamLayer, streamLayer } from './stream-layer.js';
export type { LayerOptions, StreamLayerOptions } from './stream-layer.js';
export { layerFromProcess } from './process-layer.js';
export { OpenerLayer, layerFromOpener, layerFromFile } from './opener-layer.js';
export type { Opener, OpenerLayerOptions, FileLayerOptions } from './opener-layer.js';
export { directoryTar, layerFromDirectory } from './directory.js';
export type { DirectoryTarOptions, DirectoryLayerOptions } from './directory.js';
export { extract } from './extract.js';
export { safeRelative } from './safe-path.js';
export type { ExtractOptions } from './extract.js';
export { extractVerified } from './verified-extract.js';
export type { ExtractVerifiedOptions } from './verified-extract.js';
export { flatten } from './flatten.js';
export type { FlattenOptions } from './flatten.js';
