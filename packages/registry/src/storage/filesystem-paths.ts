import { randomUUID } from 'node:crypto';
import { access, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { digestAlgorithm, digestHex, ErrorCode, LadingError, type Digest } from '@lading/core';
import { makeDirectory } from '@lading/core/internal';
import { isRepositoryName } from '../names.js';

// Where filesystemStorage keeps things, and the file-system helpers its stores share.

/** isNotFound tells whether a file-system error is ENOENT. */
export function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/** exists tells whether `path` exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** digestPath is `<root>/<algorithm>/<hex>`. */
export function digestPath(root: string, digest: Digest): string {
  return join(root, digestAlgorithm(digest), digestHex(digest));
}

/** Paths knows where everything lives under the storage directory. */
export class Paths {
  readonly root: string;
  constructor(root: string) {
    this.root = root;
  }
  get tmp(): string {
    return join(this.root, 'tmp');
  }
  blob(digest: Digest): string {
    return digestPath(join(this.root, 'blobs'), digest);
  }
  upload(id: string): string {
    return join(this.root, 'uploads', id);
  }
  repositories(): string {
    return join(this.root, 'repositories');
  }
  repo(name: string): string {
    if (!isRepositoryName(name)) {
      throw new LadingError(ErrorCode.InvalidArgument, `invalid repository name ${name}`);
    }
    return join(this.root, 'repositories', ...name.split('/'));
  }

  /** writeAtomic writes a temp file in the storage dir and renames it into place. */
  async writeAtomic(path: string, data: string | Buffer): Promise<void> {
    await makeDirectory(this.tmp);
    const tmp = join(this.tmp, randomUUID());
    await writeFile(tmp, data);
    await makeDirectory(join(path, '..'));
    await rename(tmp, path);
  }
}
