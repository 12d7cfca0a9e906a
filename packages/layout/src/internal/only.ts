import { ErrorCode, LocalPathError, type Descriptor } from '@lading/core';

/**
 * onlyImage returns the single manifest of a location read without a tag or
 * digest (as skopeo does), however many names it has. It fails with NOT_FOUND when the location holds
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
  const [first] = manifests;
  if (first === undefined) {
    throw new LocalPathError(ErrorCode.NotFound, `${where} holds no image`, path);
  }
  // One image under several names (index.json entries) is still one image.
  const images = new Map<string, string[]>();
  for (const d of manifests) {
    const seen = images.get(d.digest) ?? [];
    for (const n of names(d)) if (!seen.includes(n)) seen.push(n);
    images.set(d.digest, seen);
  }
  if (images.size === 1) return first;
  const listed = [...images].map(([digest, n]) => (n.length > 0 ? n.join(', ') : digest));
  throw new LocalPathError(
    ErrorCode.InvalidArgument,
    `${where} holds ${String(images.size)} images; name one: ${listed.join('; ')}`,
    path,
  );
}
