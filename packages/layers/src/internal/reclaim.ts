import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Two kinds of memory wait on V8's garbage collector here, and a pipeline
 * that allocates few JavaScript objects runs few collections:
 *
 * - On the main thread, compressed blocks come back from the workers as
 *   fresh ArrayBuffers (0.3–1 MiB each); dead ones piled up to V8's
 *   external-memory limit, ~30 MiB of peak RSS on Node 20 and ~60 MiB on
 *   Node 26 (one worker, 512 MiB layer). A young-generation collection
 *   every 8 MiB of blocks frees them while they are young (~0.15 ms each).
 * - In a worker, each zstd frame is made by a fresh `zstdCompressSync`,
 *   whose native context (~2 MiB) Node frees only when its handle is
 *   collected, by a full collection (400 frames on one worker: +84 MiB of
 *   RSS on Node 26, +57 MiB on Node 22). The worker runs one every 16 zstd
 *   blocks (~10 ms each, ≲ 3 % of the time): +20 and +41 MiB.
 *
 * Both use V8's `gc` function, from a context created while --expose-gc
 * is set. A process started with the flag keeps it; otherwise the flag is
 * set only while the context that needs it is created (a throwaway `vm`
 * context for the main thread, a zstd worker until it is online, 10 s at
 * most) and unset after, so no other context gains a `gc` global unless it
 * is created in that moment. Gzip workers start without it: the flag costs
 * a worker ~20 ms of start-up on Node 20 and 22.
 */

type Collect = (options: { type: 'minor' | 'major' }) => unknown;

/** Blocks' bytes between two collections on the main thread. */
const every = 8 * 1024 * 1024;

const exposedByProcess = typeof (globalThis as { gc?: unknown }).gc === 'function';
let holds = 0;
let collect: Collect | null | undefined;
let allocated = 0;

function noop(): void {
  // nothing to release
}

/**
 * exposeGc sets --expose-gc until the returned function is called, or
 * `withinMs` have passed, whichever comes first (a worker that never comes
 * online must not leave the flag set for the rest of the process); holds
 * overlap, and the flag is unset when the last is released. A process
 * started with --expose-gc keeps its flag untouched.
 */
export function exposeGc(withinMs?: number): () => void {
  if (exposedByProcess) return noop;
  try {
    setFlagsFromString('--expose-gc');
  } catch {
    return noop;
  }
  holds++;
  let released = false;
  const timer = withinMs === undefined ? undefined : setTimeout(release, withinMs).unref();
  function release(): void {
    if (released) return;
    released = true;
    clearTimeout(timer);
    if (--holds === 0) setFlagsFromString('--no-expose-gc');
  }
  return release;
}

/**
 * collector answers V8's gc function for this thread (from a throwaway
 * context created while the flag is held), or null if the runtime refuses.
 */
function collector(): Collect | null {
  if (collect !== undefined) return collect;
  collect = null;
  const release = exposeGc();
  try {
    const f: unknown = runInNewContext('typeof gc === "function" ? gc : null');
    if (typeof f === 'function') collect = f as Collect;
  } finally {
    release();
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
