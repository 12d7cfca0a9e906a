export { RegistryError, AuthError, UploadError, redactUrl, isTemporaryStatus } from './errors.js';
export type { RegistryErrorDetail, RegistryErrorInit } from './errors.js';
export { resolveCredentials, runCredentialHelper } from './credentials.js';
export type { Credentials, CredentialLookupOptions } from './credentials.js';
export { RegistryClient, MANIFEST_SIZE_LIMIT } from './client.js';
export type { RemoteOptions, FetchedManifest, BlobReadOptions } from './client.js';
export { UploadSession, DEFAULT_CHUNK_SIZE } from './upload.js';
export type { UploadMode, UploadResult } from './upload.js';
