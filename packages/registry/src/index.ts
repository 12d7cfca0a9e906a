export { createRegistry } from './registry.js';
export type { Registry, RegistryOptions, ListenOptions } from './registry.js';
export { Authenticator, parseHtpasswd } from './auth.js';
export { grantsFromFile, parseGrants } from './grants.js';
export type { HttpLimits } from './server.js';
export type { WindowLimit } from './limits.js';
export type {
  Action,
  AccessNeed,
  AuthenticatorOptions,
  GrantFunction,
  RegistryAuth,
  NoAuth,
  BasicAuth,
  TokenAuth,
} from './auth.js';
export { HttpError, SpecErrorCode } from './errors.js';
export { isRepositoryName, isTag } from './names.js';
export { memoryStorage } from './storage/memory.js';
export { filesystemStorage } from './storage/filesystem.js';
export { readOnlyStorage } from './storage/read-only.js';
export { httpObjectStorage } from './examples/object-storage.js';
export type {
  HttpObjectStorage,
  HttpObjectStorageOptions,
  ObjectRequestLog,
} from './examples/object-storage.js';
export type {
  AppendOptions,
  BlobFile,
  BlobReadOptions,
  BlobStat,
  BlobStore,
  CompletionResponse,
  ManifestRecord,
  MetadataStore,
  RegistryHooks,
  RegistryStorage,
  StorageOptions,
  StoredManifest,
  UploadCreateOptions,
  UploadInfo,
  UploadSession,
  UploadStatus,
  UploadStore,
} from './storage/types.js';
