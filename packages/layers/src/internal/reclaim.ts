import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import type * as Vm from 'node:vm';

/**
 * On the main thread, compressed blocks come back from the workers as
 * fresh ArrayBuffers (0.3–1 MiB each); dead ones piled up to V8's
 * external-memory limit, ~30 MiB of peak RSS on Node 20 and ~60 MiB on
 * Node 26 (one worker, 512 MiB layer), because a pipeline that allocates
 * few JavaScript objects runs few collections. A young-generation
 * collection every 8 MiB of blocks frees them while they are young
 * (~0.15 ms each).
 *
 * It uses V8's `gc` function, from a context created while --expose-gc is
 * set. A process started with the flag keeps it; otherwise the flag is set
 * only while a throwaway `vm` context is created, and unset after, so no
 * other context gains a `gc` global unless it is created in that moment.
 */

type Collect = (options: { type: 'minor' | 'major' }) => unknown;

/** Blocks' bytes between two collections on the main thread. */
const every = 8 * 1024 * 1024;

const exposedByProcess = typeof (globalThis as { gc?: unknown }).gc === 'function';
let collect: Collect | null | undefined;
let allocated = 0;

/**
 * collector answers V8's gc function for this thread (from a throwaway
 * context created while --expose-gc is set), or null if the runtime
 * refuses. A process started with the flag keeps it untouched.
 */
function collector(): Collect | null {
  if (collect !== undefined) return collect;
  collect = null;
  try {
    if (!exposedByProcess) setFlagsFromString('--expose-gc');
    // node:vm is loaded only now (~3 ms of every start-up otherwise).
    const vm = createRequire(import.meta.url)('node:vm') as typeof Vm;
    const f: unknown = vm.runInNewContext('typeof gc === "function" ? gc : null');
    if (typeof f === 'function') collect = f as Collect;
  } catch {
    // no collector: blocks wait for V8's own collections
  } finally {
    if (!exposedByProcess) setFlagsFromString('--no-expose-gc');
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
