export { RegistryError, AuthError, UploadError, redactUrl, isTemporaryStatus } from './errors.js';
export type { RegistryErrorDetail, RegistryErrorInit } from './errors.js';
export {
  dockerConfigPath,
  readCredentialsFile,
  resolveCredentials,
  runCredentialHelper,
} from './credentials.js';
export type { Credentials, CredentialLookupOptions } from './credentials.js';
export { RegistryClient, MANIFEST_SIZE_LIMIT } from './client.js';
export { PAGINATION_LIMITS } from './listing.js';
export type { RemoteOptions, FetchedManifest, GetBlobOptions } from './client.js';
// eslint-disable-next-line @typescript-eslint/no-deprecated -- kept for source compatibility
export type { BlobReadOptions } from './client.js';
export type { RetryOptions, TransportOptions } from './internal/transport/index.js';
export { RemoteSession, createSession } from './session.js';
export type { SessionOptions } from './session.js';
export { BlobUpload, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE } from './upload.js';
// eslint-disable-next-line @typescript-eslint/no-deprecated -- kept for source compatibility
export { UploadSession } from './upload.js';
export type { UploadMode, UploadOptions, UploadResult } from './upload.js';
export {
  write,
  writeIndex,
  writeAny,
  checkPushPermission,
  startUpload,
  PushHandle,
} from './write.js';
export type { WriteOptions, WriteResult } from './write.js';
export { pull, pullImage, blobLocation, RemoteImage, RemoteIndex, RemoteLayer } from './pull.js';
export type { PullOptions } from './pull.js';
export { RegistryTarget, registryTarget } from './registry-target.js';
export type { RegistryTargetOptions } from './registry-target.js';
