import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Compressed blocks come back from the workers as fresh ArrayBuffers
 * (0.3–1 MiB each). V8 frees an ArrayBuffer only when a collection runs,
 * and a pipeline that allocates few JavaScript objects runs few: dead
 * blocks piled up to V8's external-memory limit before a collection freed
 * them, ~30 MiB of peak RSS on Node 20 and ~60 MiB on Node 26 (one worker,
 * 512 MiB layer). A young-generation collection every few MiB of blocks
 * frees them while they are still young; each costs ~0.15 ms on a small
 * heap.
 */

type Collect = (options: { type: 'minor' }) => unknown;

/** Blocks' bytes between two collections. */
const every = 8 * 1024 * 1024;

let collect: Collect | null | undefined;
let allocated = 0;

/**
 * collector answers V8's gc function: the global one if the process runs
 * with --expose-gc, else one taken from a throwaway context with the flag
 * set only for that moment (so no other context gains a `gc` global), or
 * null if the runtime refuses.
 */
function collector(): Collect | null {
  if (collect !== undefined) return collect;
  collect = null;
  const global = (globalThis as { gc?: unknown }).gc;
  if (typeof global === 'function') {
    collect = global as Collect;
    return collect;
  }
  try {
    setFlagsFromString('--expose-gc');
    const f: unknown = runInNewContext('gc');
    if (typeof f === 'function') collect = f as Collect;
  } catch {
    // no collections from here: only memory is at stake
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  return collect;
}

/**
 * allocatedBlock records `bytes` of short-lived block memory handed to a
 * stream, and runs a young-generation collection once every 8 MiB of them
 * in this process.
 */
export function allocatedBlock(bytes: number): void {
  allocated += bytes;
  if (allocated < every) return;
  allocated = 0;
  collector()?.({ type: 'minor' });
}
