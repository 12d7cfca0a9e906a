import { ErrorCode, LadingError } from '@lading/core';

/**
 * repositoryNamePattern is the distribution-spec `<name>` grammar, anchored.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
 */
export const repositoryNamePattern =
  /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/;

/** tagPattern is the distribution-spec tag grammar, anchored. */
export const tagPattern = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/** Names longer than this are refused (clients cap host + "/" + name at 255). */
export const maxRepositoryNameLength = 255;

/** isRepositoryName tells whether `name` is a valid repository name. */
export function isRepositoryName(name: string): boolean {
  return name.length <= maxRepositoryNameLength && repositoryNamePattern.test(name);
}

/** isTag tells whether `tag` is a valid tag. */
export function isTag(tag: string): boolean {
  return tagPattern.test(tag);
}

const uploadIdPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * isUploadId tells whether `id` is an upload session id as the stores mint
 * them (a lowercase UUID): anything else never names a stored session, so
 * it can never reach a path or object key.
 */
export function isUploadId(id: string): boolean {
  return uploadIdPattern.test(id);
}

/**
 * unknownUpload is the error upload stores throw from append, read and
 * commit for a session they do not hold (the storage error contract in
 * storage/types.ts: NOT_FOUND means exactly that).
 */
export function unknownUpload(id: string): LadingError {
  return new LadingError(ErrorCode.NotFound, `upload ${id} is unknown`);
}
