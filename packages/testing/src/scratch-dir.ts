import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** ScratchDir is a fresh temporary directory and the function that removes it. */
export interface ScratchDir {
  readonly dir: string;
  /** cleanup removes the directory and everything in it. */
  cleanup(): Promise<void>;
}

/** scratchDir makes a fresh directory under the OS temp dir, named `<prefix>XXXXXX`. */
export async function scratchDir(prefix = 'lading-test-'): Promise<ScratchDir> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
