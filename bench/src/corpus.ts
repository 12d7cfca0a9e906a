import {
  copyFile,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { corpusDir, MiB, workDir } from './util.js';

/** Sources of real files and the share of the budget each one gets. */
const sources: readonly { readonly dir: string; readonly share: number }[] = [
  { dir: '/usr/lib/x86_64-linux-gnu', share: 0.55 },
  { dir: '/usr/bin', share: 0.3 },
  { dir: '/usr/share/doc', share: 0.15 },
];

/** Files above this are skipped: a corpus of many files, like a real image. */
const maxFile = 64 * MiB;

/** CorpusInfo describes the prepared corpus. */
export interface CorpusInfo {
  readonly dir: string;
  readonly budget: number;
  readonly files: number;
  readonly dirs: number;
  readonly symlinks: number;
  readonly bytes: number;
}

interface Picked {
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
}

/**
 * pick walks `src` depth-first in byte-sorted name order and copies regular
 * files while they fit in `budget` (a file that does not fit is skipped, the
 * walk goes on), symlinks as links, and the directories that hold them. The
 * same machine and budget always give the same corpus.
 */
async function pick(src: string, dst: string, budget: number, acc: Picked): Promise<void> {
  let names: string[];
  try {
    names = await readdir(src);
  } catch {
    return;
  }
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const name of names) {
    if (acc.bytes >= budget) return;
    const from = join(src, name);
    const to = join(dst, name);
    let st;
    try {
      st = await lstat(from);
    } catch {
      continue;
    }
    if (st.isDirectory()) {
      await mkdir(to, { recursive: true });
      acc.dirs++;
      await pick(from, to, budget, acc);
    } else if (st.isSymbolicLink()) {
      await mkdir(dst, { recursive: true });
      await symlink(await readlink(from), to);
      acc.symlinks++;
    } else if (st.isFile() && st.size <= maxFile && acc.bytes + st.size <= budget) {
      try {
        await copyFile(from, to);
      } catch {
        continue; // unreadable
      }
      acc.files++;
      acc.bytes += st.size;
    }
  }
}

/**
 * describeCorpus counts what `dir` holds, to measure it as it is
 * (`--corpus=DIR`); its budget is its size.
 */
export async function describeCorpus(dir: string): Promise<CorpusInfo> {
  const acc: Picked = { files: 0, dirs: 0, symlinks: 0, bytes: 0 };
  const walk = async (d: string): Promise<void> => {
    for (const name of await readdir(d)) {
      const st = await lstat(join(d, name));
      if (st.isDirectory()) {
        acc.dirs++;
        await walk(join(d, name));
      } else if (st.isSymbolicLink()) acc.symlinks++;
      else if (st.isFile()) {
        acc.files++;
        acc.bytes += st.size;
      }
    }
  };
  await walk(dir);
  return { dir, budget: acc.bytes, ...acc };
}

/**
 * prepareCorpus copies a deterministic selection of real files from the
 * machine into bench/corpus, up to `budget` bytes, and reuses it when a
 * previous run prepared one with the same budget.
 */
export async function prepareCorpus(budget: number): Promise<CorpusInfo> {
  const stamp = join(workDir, `corpus.json`);
  try {
    const info = JSON.parse(await readFile(stamp, 'utf8')) as CorpusInfo;
    if (info.budget === budget && info.dir === corpusDir) {
      await lstat(corpusDir);
      return info;
    }
  } catch {
    // none yet
  }
  await rm(corpusDir, { recursive: true, force: true });
  await mkdir(corpusDir, { recursive: true });
  const acc: Picked = { files: 0, dirs: 0, symlinks: 0, bytes: 0 };
  let before = 0;
  for (const s of sources) {
    const dst = join(corpusDir, s.dir);
    await mkdir(dirname(dst), { recursive: true });
    await mkdir(dst, { recursive: true });
    await pick(s.dir, dst, before + Math.floor(budget * s.share), acc);
    before = acc.bytes;
  }
  const info: CorpusInfo = { dir: corpusDir, budget, ...acc };
  await mkdir(workDir, { recursive: true });
  await writeFile(stamp, JSON.stringify(info, null, 2) + '\n');
  return info;
}
