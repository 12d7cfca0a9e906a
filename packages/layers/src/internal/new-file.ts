import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/**
 * openNewFile creates `abs` for writing, mode 0600 until the caller sets
 * the entry's: O_EXCL | O_NOFOLLOW, so it never opens through a link and
 * never reuses a file.
 */
export function openNewFile(abs: string): Promise<FileHandle> {
  return open(
    abs,
    fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW,
    0o600,
  );
}
