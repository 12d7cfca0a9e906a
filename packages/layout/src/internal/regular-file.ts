import { constants } from 'node:fs';
import { lstat, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, LadingError } from '@lading/core';

// O_NONBLOCK keeps open() of a FIFO from blocking; fstat then refuses it.
const flags = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

function unsafe(path: string, what: string): LadingError {
  return new LadingError(
    ErrorCode.UnsafePath,
    `${path} is ${what}, not a regular file inside the layout; refusing to read it`,
  );
}

/**
 * openRegularFile opens `root/…parts` for reading only when every directory
 * below `root` is a real directory and the file itself a regular file: no
 * symlink is followed (O_NOFOLLOW, then fstat on the open handle, so a swap
 * between check and open cannot redirect the read).
 * @throws UNSAFE_PATH for a symlink, FIFO, device or directory; the fs error (ENOENT …) otherwise
 */
export async function openRegularFile(root: string, parts: readonly string[]): Promise<FileHandle> {
  let dir = root;
  for (const part of parts.slice(0, -1)) {
    dir = join(dir, part);
    const st = await lstat(dir);
    if (!st.isDirectory()) throw unsafe(dir, st.isSymbolicLink() ? 'a symlink' : 'not a directory');
  }
  const path = join(root, ...parts);
  let fh: FileHandle;
  try {
    fh = await open(path, flags);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ELOOP' || code === 'EMLINK') throw unsafe(path, 'a symlink');
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw unsafe(path, st.isDirectory() ? 'a directory' : 'a special file');
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/**
 * checkLayoutShape makes sure a layout about to be written is made of real
 * directories (`blobs`, `blobs/<alg>`) and regular files (`oci-layout`,
 * `index.json`), as its readers require: a symlink there would send the
 * blobs elsewhere, and the layout could not be read back.
 * @throws UNSAFE_PATH naming the first entry that is not
 */
export async function checkLayoutShape(root: string, algorithms: readonly string[]): Promise<void> {
  const entries: [string, 'directory' | 'file'][] = [
    ['blobs', 'directory'],
    ...algorithms.map((a): [string, 'directory'] => [join('blobs', a), 'directory']),
    ['oci-layout', 'file'],
    ['index.json', 'file'],
  ];
  for (const [rel, kind] of entries) {
    const path = join(root, rel);
    const st = await lstat(path);
    if (kind === 'directory' ? st.isDirectory() : st.isFile()) continue;
    throw new LadingError(
      ErrorCode.UnsafePath,
      `${path} is ${st.isSymbolicLink() ? 'a symlink' : kind === 'file' ? 'not a regular file' : 'not a directory'}, not a ${kind === 'file' ? 'regular file' : 'directory'} inside the layout; refusing to write through it`,
    );
  }
}
