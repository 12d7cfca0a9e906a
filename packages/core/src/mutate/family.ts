import { ErrorCode, LadingError } from '../errors.js';
import { MediaType, isDockerMediaType, type MediaTypeString } from '../media-types.js';

/**
 * MediaTypeFamily chooses between OCI media types and Docker schema 2 ones
 * for a manifest, its config and its layers.
 */
export type MediaTypeFamily = 'oci' | 'docker';

/** familyOf tells which family a media type belongs to (anything not Docker counts as OCI). */
export function familyOf(mediaType: string | undefined): MediaTypeFamily {
  return isDockerMediaType(mediaType) ? 'docker' : 'oci';
}

/** manifestTypeFor is the image manifest media type of a family. */
export function manifestTypeFor(family: MediaTypeFamily): MediaTypeString {
  return family === 'docker' ? MediaType.DockerManifest : MediaType.OciManifest;
}

/** indexTypeFor is the index (manifest list) media type of a family. */
export function indexTypeFor(family: MediaTypeFamily): MediaTypeString {
  return family === 'docker' ? MediaType.DockerManifestList : MediaType.OciIndex;
}

/** configTypeFor maps an image config media type into a family; other (artifact) types stay. */
export function configTypeFor(mediaType: string, family: MediaTypeFamily): MediaTypeString {
  if (mediaType !== MediaType.OciConfig && mediaType !== MediaType.DockerConfig) return mediaType;
  return family === 'docker' ? MediaType.DockerConfig : MediaType.OciConfig;
}

const toDocker: Record<string, string> = {
  [MediaType.OciLayerGzip]: MediaType.DockerLayerGzip,
  [MediaType.OciLayerNondistributableGzip]: MediaType.DockerLayerForeignGzip,
};
const toOci: Record<string, string> = {
  [MediaType.DockerLayerGzip]: MediaType.OciLayerGzip,
  [MediaType.DockerLayerForeignGzip]: MediaType.OciLayerNondistributableGzip,
};

/**
 * layerTypeFor maps a layer media type into a family. Only the gzip types
 * have a counterpart; others (plain tar, zstd) are left as they are.
 */
export function layerTypeFor(mediaType: string, family: MediaTypeFamily): MediaTypeString {
  return (family === 'docker' ? toDocker[mediaType] : toOci[mediaType]) ?? mediaType;
}

/** checkFamily validates a family given by a caller. @throws INVALID_ARGUMENT */
export function checkFamily(family: unknown): MediaTypeFamily {
  if (family === 'oci' || family === 'docker') return family;
  throw new LadingError(
    ErrorCode.InvalidArgument,
    `media type family must be "oci" or "docker", got ${JSON.stringify(family)}`,
  );
}
