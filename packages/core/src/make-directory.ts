import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

function codeOf(err: unknown): unknown {
  return typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

/**
 * makeDirectory creates `path` and its missing parents, like
 * `mkdir(path, { recursive: true })`, and resolves to the first directory it
 * created (undefined when `path` already was a directory).
 *
 * Node's recursive mkdir never returns when a parent exists but refuses new
 * entries with ENOENT (`/proc/x`: the loop creates the parent, gets EEXIST,
 * retries the child, gets ENOENT, forever, holding a libuv thread). This walks
 * up once per level and rethrows the second ENOENT, so callers can turn it
 * into a one-line error.
 * @throws the Node file-system error (ENOENT, EACCES, ENOTDIR, EEXIST for a
 *   non-directory at `path`)
 */
export async function makeDirectory(path: string, mode?: number): Promise<string | undefined> {
  try {
    await mkdir(path, { mode });
    return path;
  } catch (err) {
    const code = codeOf(err);
    if (code === 'EEXIST' && (await isDirectory(path))) return undefined;
    const parent = dirname(path);
    if (code !== 'ENOENT' || parent === path) throw err;
    const first = await makeDirectory(parent, mode);
    try {
      await mkdir(path, { mode });
    } catch (again) {
      // Another process made it meanwhile: that is what we wanted.
      if (codeOf(again) !== 'EEXIST' || !(await isDirectory(path))) throw again;
      return first;
    }
    return first ?? path;
  }
}
