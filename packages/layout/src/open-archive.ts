import type { DockerArchive, DockerArchiveOptions } from './docker-archive.js';
import { DockerArchiveReader } from './docker-archive-reader.js';
import { DockerArchiveWriter } from './docker-archive-writer.js';

/**
 * dockerArchive opens a `docker save` tarball as a target: `{ mode: 'read' }`
 * (default) gives a {@link DockerArchiveReader}, `{ mode: 'write' }` a
 * {@link DockerArchiveWriter} that writes the file on `close()`. No I/O
 * happens until the first call.
 */
export function dockerArchive(
  file: string,
  options: DockerArchiveOptions & { readonly mode: 'write' },
): DockerArchiveWriter;
export function dockerArchive(
  file: string,
  options?: DockerArchiveOptions & { readonly mode?: 'read' },
): DockerArchiveReader;
export function dockerArchive(file: string, options?: DockerArchiveOptions): DockerArchive;
export function dockerArchive(file: string, options: DockerArchiveOptions = {}): DockerArchive {
  return options.mode === 'write'
    ? new DockerArchiveWriter(file, options)
    : new DockerArchiveReader(file);
}
