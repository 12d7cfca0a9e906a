export { OciLayout, ociLayout, refNameAnnotation } from './oci-layout.js';
export type { OciLayoutOptions, GcResult } from './oci-layout.js';
export { DockerArchive, normalizeRepoTag } from './docker-archive.js';
export type { DockerArchiveOptions, ArchiveImage } from './docker-archive.js';
export { DockerArchiveReader } from './docker-archive-reader.js';
export { DockerArchiveWriter } from './docker-archive-writer.js';
export { dockerArchive } from './open-archive.js';
