export { OciLayout, ociLayout, refNameAnnotation } from './oci-layout.js';
export type { OciLayoutOptions, GcResult } from './oci-layout.js';
export { DockerArchive, dockerArchive, normalizeRepoTag } from './docker-archive.js';
export type { DockerArchiveOptions, ArchiveImage } from './docker-archive.js';
