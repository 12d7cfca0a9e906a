import { randomUUID } from 'node:crypto';
import { link, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { AbortedError, ErrorCode, LadingError, throwIfAborted } from '@lading/core';
import { codeOf } from './layout-files.js';

/** LockOptions tune {@link withFileLock}. */
export interface LockOptions {
  /** timeoutMs is how long to wait for the lock before failing with TIMEOUT; default 30 s. */
  readonly timeoutMs?: number;
  /** staleMs is the age after which a lock file is considered left by a dead process; default 15 s. */
  readonly staleMs?: number;
  readonly signal?: AbortSignal | undefined;
}

async function breakStale(lockPath: string, staleMs: number): Promise<void> {
  // Rename instead of unlink: of several processes breaking the same stale
  // lock, exactly one rename succeeds.
  const aside = `${lockPath}.stale-${randomUUID()}`;
  try {
    await rename(lockPath, aside);
  } catch (err) {
    if (codeOf(err) === 'ENOENT') return;
    throw err;
  }
  try {
    const s = await stat(aside);
    if (Date.now() - s.mtimeMs <= staleMs) {
      // We raced a process that had just taken a fresh lock: give it back,
      // unless yet another one has been created meanwhile.
      await link(aside, lockPath).catch(() => undefined);
    }
  } finally {
    await rm(aside, { force: true });
  }
}

/**
 * withFileLock runs `fn` holding an exclusive lock file created with
 * O_CREAT|O_EXCL, retrying with jittered exponential backoff while another
 * process holds it. Locks older than `staleMs` are broken. Works across
 * processes on one local filesystem.
 * @throws TIMEOUT when the lock stays taken for `timeoutMs`, ABORTED
 */
export async function withFileLock<T>(
  lockPath: string,
  fn: () => Promise<T>,
  options: LockOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const staleMs = options.staleMs ?? 15_000;
  const started = Date.now();
  const token = `${process.pid} ${randomUUID()}`;
  for (let attempt = 0; ; attempt++) {
    throwIfAborted(options.signal);
    try {
      const fh = await open(lockPath, 'wx');
      try {
        await fh.writeFile(token);
      } finally {
        await fh.close();
      }
      break;
    } catch (err) {
      if (codeOf(err) !== 'EEXIST') throw err;
    }
    const s = await stat(lockPath).catch(() => undefined);
    if (s !== undefined && Date.now() - s.mtimeMs > staleMs) {
      await breakStale(lockPath, staleMs);
      continue;
    }
    if (Date.now() - started > timeoutMs) {
      throw new LadingError(
        ErrorCode.Timeout,
        `could not take ${lockPath} within ${timeoutMs} ms; if no process holds it, delete it`,
      );
    }
    const base = Math.min(2 * 2 ** Math.min(attempt, 6), 100);
    try {
      await sleep(base * (0.5 + Math.random()), undefined, { signal: options.signal });
    } catch (err) {
      throw new AbortedError(err);
    }
  }
  try {
    return await fn();
  } finally {
    const held = await readFile(lockPath, 'utf8').catch(() => undefined);
    if (held === token) await rm(lockPath, { force: true });
  }
}
