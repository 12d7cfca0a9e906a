/**
 * MediaType lists the OCI and Docker schema 2 media types lading knows.
 * @see https://github.com/opencontainers/image-spec/blob/main/media-types.md
 */
export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OciEmpty: 'application/vnd.oci.empty.v1+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerLayerForeignGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

/** KnownMediaType is one of {@link MediaType}. */
export type KnownMediaType = (typeof MediaType)[keyof typeof MediaType];

/** MediaTypeString is any media type; known ones autocomplete. */
export type MediaTypeString = KnownMediaType | (string & {});

/** isIndexMediaType tells whether `mt` is an OCI index or a Docker manifest list. */
export function isIndexMediaType(mt: string | undefined): boolean {
  return mt === MediaType.OciIndex || mt === MediaType.DockerManifestList;
}

/** isImageManifestMediaType tells whether `mt` is an OCI or Docker image manifest. */
export function isImageManifestMediaType(mt: string | undefined): boolean {
  return mt === MediaType.OciManifest || mt === MediaType.DockerManifest;
}

/** isManifestMediaType tells whether `mt` names any manifest (image or index). */
export function isManifestMediaType(mt: string | undefined): boolean {
  return isIndexMediaType(mt) || isImageManifestMediaType(mt);
}

/** isDockerMediaType tells whether `mt` belongs to the Docker schema 2 family. */
export function isDockerMediaType(mt: string | undefined): boolean {
  return mt?.startsWith('application/vnd.docker.') === true;
}

/**
 * isLayerMediaType tells the blobs of a filesystem layer (a tar, any
 * compression; OCI and Docker, foreign and non-distributable included).
 */
export function isLayerMediaType(mt: string): boolean {
  return mt.includes('.layer.') || mt.includes('.rootfs.');
}

/** isGzipLayerMediaType tells whether layers of this type are gzip-compressed. */
export function isGzipLayerMediaType(mt: string | undefined): boolean {
  return mt !== undefined && (mt.endsWith('+gzip') || mt.endsWith('.tar.gzip'));
}

/** manifestAccept is the Accept header value listing every manifest type lading reads. */
export const manifestAccept: readonly string[] = [
  MediaType.OciManifest,
  MediaType.OciIndex,
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
];
