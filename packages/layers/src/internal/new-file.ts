import {
  closeSync,
  constants as fsConstants,
  fchmodSync,
  openSync,
  writeSync,
  writevSync,
  type PathLike,
} from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/** O_EXCL | O_NOFOLLOW: never open through a link, never reuse a file. */
const createFlags =
  fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;

/**
 * openNewFile creates `abs` for writing, mode 0600 until the caller sets
 * the entry's: O_EXCL | O_NOFOLLOW, so it never opens through a link and
 * never reuses a file.
 */
export function openNewFile(abs: PathLike): Promise<FileHandle> {
  return open(abs, createFlags, 0o600);
}

/** writeBatch is how many bytes of a file are gathered before one write. */
export const writeBatch = 1024 * 1024;

/** writeAll writes `chunks` (`total` bytes) at the file's position, with one writev when it can. */
export async function writeAll(
  fh: FileHandle,
  chunks: readonly Buffer[],
  total: number,
): Promise<void> {
  const { bytesWritten } = await fh.writev(chunks);
  if (bytesWritten === total) return;
  // A short write (rare on regular files): write the rest plainly.
  let rest = Buffer.concat(chunks).subarray(bytesWritten);
  while (rest.length > 0) {
    const r = await fh.write(rest);
    rest = rest.subarray(r.bytesWritten);
  }
}

/** Files up to this size are written with synchronous calls. */
export const smallFile = 256 * 1024;

/** writeSmallFileSync creates `abs` (never through a link) with `mode` and writes `chunks` to it. */
export function writeSmallFileSync(
  abs: PathLike,
  mode: number,
  chunks: Buffer[],
  total: number,
): void {
  const fd = openSync(abs, createFlags, 0o600);
  try {
    fchmodSync(fd, mode);
    let done = total === 0 ? 0 : writevSync(fd, chunks);
    if (done < total) {
      // A short write (rare on regular files): write the rest plainly.
      const all = Buffer.concat(chunks, total);
      while (done < total) done += writeSync(fd, all, done, total - done);
    }
  } finally {
    closeSync(fd);
  }
}
