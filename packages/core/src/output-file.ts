import { createWriteStream, type Stats } from 'node:fs';
import { chmod, lstat, readlink, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomUUID } from 'node:crypto';
import { ErrorCode, LocalPathError, fileSystemError } from './errors.js';

/** The symbolic links followed to find an output file, as the kernel allows. */
const maxLinks = 40;

/**
 * outputTarget follows `file` through symbolic links (a dangling one names
 * the file to create) and answers the path to write with what is there.
 */
async function outputTarget(file: string): Promise<{ path: string; st: Stats | undefined }> {
  let path = resolve(file);
  for (let hops = 0; ; hops++) {
    const st = await lstat(path).catch((err: unknown) => {
      if ((err as { code?: unknown }).code === 'ENOENT') return undefined;
      throw fileSystemError(err, file);
    });
    if (!(st?.isSymbolicLink() ?? false)) return { path, st };
    if (hops === maxLinks)
      throw fileSystemError(Object.assign(new Error('too many links'), { code: 'ELOOP' }), file);
    const link = await readlink(path).catch((err: unknown) => {
      throw fileSystemError(err, file);
    });
    path = resolve(dirname(path), link);
  }
}

/**
 * checkOutputFile tells, before any work is spent on its content, whether
 * {@link writeOutputFile} can write `file`: not a directory, and in a
 * directory that exists. It returns what is there (undefined: nothing).
 * @throws IO (a LocalPathError naming `file`)
 */
export async function checkOutputFile(
  file: string,
): Promise<{ path: string; st: Stats | undefined }> {
  const target = await outputTarget(file);
  if (target.st?.isDirectory() === true)
    throw fileSystemError(Object.assign(new Error('is a directory'), { code: 'EISDIR' }), file);
  if (target.st !== undefined) return target;
  const dir = dirname(target.path);
  const st = await stat(dir).catch(() => undefined);
  if (st?.isDirectory() !== true)
    throw new LocalPathError(
      ErrorCode.Io,
      `cannot write ${file}: ${st === undefined ? `no directory ${dir}` : `${dir} is not a directory`}`,
      file,
    );
  return target;
}

/**
 * writeOutputFile writes `content` to `file` the way a user who names an
 * output file expects:
 * - a regular file (or none) is replaced whole: the bytes go to a temp file
 *   beside it, renamed into place only once complete, so a failure leaves
 *   the old file as it was; an existing file keeps its permission bits;
 * - a symbolic link is followed, and its target replaced so (the link stays);
 * - a device, FIFO or socket (`/dev/null`, a named pipe) is written
 *   through, never unlinked and replaced by a regular file;
 * - a directory is an error naming `file`.
 * `newMode` gives a file created here its permission bits (0o600 for one
 * that holds secrets); by default the umask decides, as for any new file.
 * @throws IO, NOT_FOUND, PERMISSION_DENIED (as LocalPathError), or the
 *   content's own error
 */
export async function writeOutputFile(
  file: string,
  content: Readable | AsyncIterable<Uint8Array>,
  signal?: AbortSignal,
  newMode?: number,
): Promise<void> {
  const { path, st } = await checkOutputFile(file);
  if (st !== undefined && !st.isFile()) {
    await pipeline(content, createWriteStream(path, { flags: 'w' }), { signal }).catch(
      (err: unknown) => {
        throw isSystemError(err) ? fileSystemError(err, file) : err;
      },
    );
    return;
  }
  const tmp = join(dirname(path), `.${basename(path)}.${randomUUID()}.tmp`);
  try {
    await pipeline(
      content,
      createWriteStream(tmp, { flags: 'wx', ...(newMode === undefined ? {} : { mode: newMode }) }),
      { signal },
    );
    if (st !== undefined) await chmod(tmp, st.mode & 0o7777);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    // The temp file is ours: a failure on it is reported against `file`.
    throw isSystemError(err) ? fileSystemError(err, file) : err;
  }
}

function isSystemError(err: unknown): boolean {
  const e = err as { syscall?: unknown; code?: unknown } | null;
  return typeof e?.syscall === 'string' && typeof e.code === 'string';
}
