import { join } from 'node:path';
import { ErrorCode, LadingError, digestAlgorithm, digestHex, type Digest } from '@lading/core';
import { openRegularFile } from './regular-file.js';

/** codeOf is an error's errno code (`ENOENT`, …), if it has one. */
export function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
}

/** blobParts is the path of a blob below the layout root: `blobs/<alg>/<hex>`. */
export function blobParts(digest: Digest): string[] {
  return ['blobs', digestAlgorithm(digest), digestHex(digest)];
}

/**
 * readSmall reads a regular file of the layout (index.json, a manifest)
 * whole, through real directories only.
 * @throws MANIFEST_TOO_LARGE over `max` bytes, UNSAFE_PATH
 */
export async function readSmall(
  root: string,
  parts: readonly string[],
  max: number,
): Promise<Buffer> {
  const path = join(root, ...parts);
  const fh = await openRegularFile(root, parts);
  try {
    const { size } = await fh.stat();
    if (size > max) {
      throw new LadingError(ErrorCode.ManifestTooLarge, `${path} is ${size} bytes, over ${max}`);
    }
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}
