import { ErrorCode, LocalPathError, type Descriptor } from '@lading/core';

/**
 * onlyImage returns the single manifest of a location read without a tag or
 * digest (as skopeo does). It fails with NOT_FOUND when the location holds
 * none, and with INVALID_ARGUMENT, listing the names (else digests) to
 * choose from, when it holds several: the reference, not the location, is
 * what needs fixing.
 */
export function onlyImage(
  manifests: readonly Descriptor[],
  where: string,
  path: string,
  names: (d: Descriptor) => readonly string[],
): Descriptor {
  const [first, ...rest] = manifests;
  if (first !== undefined && rest.length === 0) return first;
  if (first === undefined) {
    throw new LocalPathError(ErrorCode.NotFound, `${where} holds no image`, path);
  }
  const listed = manifests.map((d) => {
    const n = names(d);
    return n.length > 0 ? n.join(', ') : d.digest;
  });
  throw new LocalPathError(
    ErrorCode.InvalidArgument,
    `${where} holds ${manifests.length} images; name one: ${listed.join('; ')}`,
    path,
  );
}
