/**
 * `@lading/core/internal` is plumbing the lading packages share with each
 * other. It is not part of the public API, is left out of the API
 * reference, and may change in any release.
 * @packageDocumentation
 */
export { childrenToWrite } from './image.js';
export { manifestAccept } from './media-types.js';
export { deferredStream, layerTarStream } from './compression.js';
export { isVerified, markVerified } from './verified.js';
export type { VerifiedContent } from './verified.js';
