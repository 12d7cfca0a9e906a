import type { BlobStore, MetadataStore, RegistryStorage } from './types.js';

/**
 * readOnlyStorage exposes only the read methods of `storage`: a registry
 * over it serves pulls and answers pushes and deletes with 405 UNSUPPORTED.
 */
export function readOnlyStorage(storage: RegistryStorage): RegistryStorage {
  const b = storage.blobs;
  const m = storage.metadata;
  const location = b.location?.bind(b);
  const openFile = b.open?.bind(b);
  const blobs: BlobStore = {
    stat: (digest, options) => b.stat(digest, options),
    get: (digest, options) => b.get(digest, options),
  };
  if (location !== undefined) blobs.location = location;
  if (openFile !== undefined) blobs.open = openFile;
  const metadata: MetadataStore = {
    repositoryExists: (repository, options) => m.repositoryExists(repository, options),
    listRepositories: (options) => m.listRepositories(options),
    getManifest: (repository, digest, options) => m.getManifest(repository, digest, options),
    resolveTag: (repository, tag, options) => m.resolveTag(repository, tag, options),
    listTags: (repository, options) => m.listTags(repository, options),
    hasBlob: (repository, digest, options) => m.hasBlob(repository, digest, options),
    referrers: (repository, subject, options) => m.referrers(repository, subject, options),
  };
  return { blobs, metadata };
}
