import { lstatSync, type Stats } from 'node:fs';
import { isAscii } from './tar-check.js';

/*
 * Paths in extract are byte strings: one char per byte of the path (the
 * latin1 view of its bytes), so that a name that is not UTF-8 keeps its
 * bytes through the same splitting, joining and comparing as any other.
 * ASCII paths are the same either way.
 */

/** fsPath is a byte-string path as the file system takes it. */
export function fsPath(p: string): string | Buffer {
  return isAscii(p) ? p : Buffer.from(p, 'latin1');
}

/** shown is a byte-string path as text, for messages. */
export function shown(p: string): string {
  return isAscii(p) ? p : Buffer.from(p, 'latin1').toString('utf8');
}

/** byteString is a text path as a byte string. */
export function byteString(p: string): string {
  return isAscii(p) ? p : Buffer.from(p, 'utf8').toString('latin1');
}

/**
 * lstatOrUndefined is a synchronous lstat of a byte-string path: extract
 * makes tens of thousands of these on a page-cached tree, and a thread-pool
 * round trip for each costs far more than the call.
 */
export function lstatOrUndefined(p: string): Stats | undefined {
  return lstatSync(fsPath(p), { throwIfNoEntry: false });
}
