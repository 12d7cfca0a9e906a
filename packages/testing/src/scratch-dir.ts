import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** ScratchDir is a fresh temporary directory and the function that removes it. */
export interface ScratchDir {
  readonly dir: string;
  /** cleanup removes the directory and everything in it. */
  readonly cleanup: () => Promise<void>;
}

/** scratchDir makes a fresh directory under the OS temp dir, named `<prefix>XXXXXX`. */
export async function scratchDir(prefix = 'lading-test-'): Promise<ScratchDir> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** ScratchDirs hands out scratch directories and removes them all at once. */
export interface ScratchDirs {
  /** make creates one more directory and answers its path. */
  make(): Promise<string>;
  /** removeAll removes every directory made since the last call. */
  removeAll(): Promise<void>;
}

/**
 * scratchDirs is a pool of {@link scratchDir}s named `<prefix>XXXXXX`:
 * `make()` in a test, `removeAll()` in its `afterEach`.
 */
export function scratchDirs(prefix = 'lading-test-'): ScratchDirs {
  const made: ScratchDir[] = [];
  return {
    async make() {
      const d = await scratchDir(prefix);
      made.push(d);
      return d.dir;
    },
    async removeAll() {
      for (const d of made.splice(0)) await d.cleanup();
    },
  };
}
