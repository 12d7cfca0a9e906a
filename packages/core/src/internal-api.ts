/**
 * `@lading/core/internal` is plumbing the lading packages share with each
 * other. It is not part of the public API, is left out of the API
 * reference, and may change in any release.
 * @packageDocumentation
 */
export { childrenToWrite } from './image.js';
export { formatCreated } from './mutate/config.js';
export { isLayerMediaType, manifestAccept } from './media-types.js';
export { isReferrersTag, referrersTag } from './referrers-tag.js';
export { discardSink } from './sink.js';
export { deferredStream } from './compression.js';
export { encodeTarHeader, tarPadding, tarTrailer } from './tar-header.js';
export type { TarHeader, TarName, TarType } from './tar-header.js';
export { Limiter } from './limiter.js';
export { deferred } from './deferred.js';
export type { Deferred } from './deferred.js';
export { ByteCounter } from './byte-counter.js';
export type { ByteCounterOptions } from './byte-counter.js';
export { openRead, pushImageInOrder } from './write-image.js';
export type { ImagePushSteps } from './write-image.js';
export { makeDirectory } from './make-directory.js';
export { evalWorkerExecArgv } from './eval-worker.js';
export { checkOutputFile, writeOutputFile } from './output-file.js';
export {
  blockGzipHeader,
  blockGzipSize,
  blockGzipSync,
  blockGzipTrailer,
  decompressionError,
  zstdFrameSync,
  zstdFramer,
  sniffCompression,
  zstdLevelRange,
  zstdUnsupported,
} from './compression.js';
export { RawDeflater, libdeflateModule } from './deflate.js';
export { incompressible, storedDeflate, storedDeflateSize } from './stored-deflate.js';
export type { WasmModule } from './deflate.js';
export { isVerified, markDigesting, markVerified, ownDigest } from './verified.js';
export type { VerifiedContent } from './verified.js';
