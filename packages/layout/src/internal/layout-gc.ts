import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  isDigest,
  isManifestMediaType,
  MAX_MANIFEST_SIZE,
  successorsOf,
  throwIfAborted,
  type Descriptor,
  type Digest,
} from '@lading/core';
import type { GcResult } from '../oci-layout.js';
import { blobParts, codeOf, readSmall } from './layout-files.js';

/** Temp files older than this are left by a dead writer. */
const staleTmpMs = 3_600_000;

async function reachable(dir: string, roots: readonly Descriptor[]): Promise<Set<string>> {
  const live = new Set<string>();
  const walk = async (desc: Descriptor): Promise<void> => {
    if (live.has(desc.digest)) return;
    live.add(desc.digest);
    if (!isManifestMediaType(desc.mediaType)) return;
    let content: Buffer;
    try {
      content = await readSmall(dir, blobParts(desc.digest), MAX_MANIFEST_SIZE);
    } catch (err) {
      if (codeOf(err) === 'ENOENT') return; // the spec allows missing blobs
      throw err;
    }
    for (const child of successorsOf(content, desc)) await walk(child);
  };
  for (const d of roots) await walk(d);
  return live;
}

/**
 * sweep removes every blob of the layout at `dir` not reachable from
 * `roots` (the index.json entries), and `.lading-tmp-*` files older than an
 * hour. The caller holds the index lock.
 */
export async function sweep(
  dir: string,
  roots: readonly Descriptor[],
  signal: AbortSignal | undefined,
): Promise<GcResult> {
  const live = await reachable(dir, roots);
  const removed: Digest[] = [];
  let bytes = 0;
  const blobs = join(dir, 'blobs');
  for (const alg of await readdir(blobs)) {
    if (alg !== 'sha256' && alg !== 'sha512') continue;
    for (const hex of await readdir(join(blobs, alg))) {
      throwIfAborted(signal);
      const digest = `${alg}:${hex}`;
      if (!isDigest(digest) || live.has(digest)) continue;
      const path = join(blobs, alg, hex);
      const s = await stat(path);
      await rm(path, { force: true });
      removed.push(digest);
      bytes += s.size;
    }
  }
  for (const name of await readdir(dir)) {
    if (!name.startsWith('.lading-tmp-')) continue;
    const path = join(dir, name);
    const s = await stat(path).catch(() => undefined);
    if (s !== undefined && Date.now() - s.mtimeMs > staleTmpMs) await rm(path, { force: true });
  }
  return { removed, bytes };
}
