import { setTimeout as sleep } from 'node:timers/promises';
import { AbortedError } from '@lading/core';
import { RegistryError, UploadError } from '../../errors.js';

/**
 * RetryOptions tune the retries of temporary failures (408, 429, 5xx, dropped
 * connections): exponential backoff with jitter, honouring `Retry-After`.
 */
export type RetryOptions = {
  /** retries is how many times a request sequence is retried (default 3). */
  readonly retries?: number;
  /** minDelayMs is the first backoff (default 200). */
  readonly minDelayMs?: number;
  /** maxDelayMs caps each backoff (default 10 000). */
  readonly maxDelayMs?: number;
};

/** RetryPolicy is {@link RetryOptions} with every default filled in. */
export type RetryPolicy = Required<RetryOptions>;

/** retryPolicy resolves the defaults of {@link RetryOptions}; false means no retries. */
export function retryPolicy(options: RetryOptions | false | undefined): RetryPolicy {
  if (options === false) return { retries: 0, minDelayMs: 0, maxDelayMs: 0 };
  return {
    retries: options?.retries ?? 3,
    minDelayMs: options?.minDelayMs ?? 200,
    maxDelayMs: options?.maxDelayMs ?? 10_000,
  };
}

const temporaryCodes = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/** isNetworkError tells a dropped or refused connection (worth a retry) from e.g. a TLS failure. */
export function isNetworkError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && temporaryCodes.has(code);
}

/** isTemporary tells whether an error is worth retrying. */
export function isTemporary(err: unknown): boolean {
  return (
    (err instanceof RegistryError && err.temporary) ||
    (err instanceof UploadError && err.restartable)
  );
}

/**
 * exhausted holds the errors a withRetry gave up on after its retries: an
 * enclosing withRetry (copy()'s per blob around a request that retries
 * itself) does not multiply them.
 */
const exhausted = new WeakSet<object>();

/**
 * markExhausted records that `err` ended retries of its own (a blob read
 * that asked again for its rest until it gave up): an enclosing withRetry
 * does not start them over.
 */
export function markExhausted(err: unknown): void {
  if (typeof err === 'object' && err !== null) exhausted.add(err);
}

/** backoffMs is the delay before retry `attempt` (from 0): exponential, with jitter. */
export function backoffMs(policy: RetryPolicy, attempt: number): number {
  const backoff = Math.min(policy.maxDelayMs, policy.minDelayMs * 2 ** attempt);
  return backoff / 2 + Math.random() * (backoff / 2);
}

/** OnRetry hears about each retry before its backoff. */
export type OnRetry = (attempt: number, delayMs: number, err: unknown) => void;

/**
 * withRetry runs a whole request sequence again on temporary failures
 * (408/429/5xx, connection resets) with exponential backoff and jitter,
 * honouring Retry-After. The sequence's own requests are never retried
 * inside it. A failure that an inner withRetry already retried to its limit
 * is not retried again here (so nested retries add up, not multiply).
 */
export async function withRetry<T>(
  policy: RetryPolicy,
  fn: (attempt: number) => Promise<T>,
  signal?: AbortSignal,
  onRetry?: OnRetry,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const spent = typeof err === 'object' && err !== null && exhausted.has(err);
      if (attempt >= policy.retries || spent || !isTemporary(err) || signal?.aborted === true) {
        if (attempt > 0 && isTemporary(err)) markExhausted(err);
        throw err;
      }
      const jittered = backoffMs(policy, attempt);
      const after = err instanceof RegistryError ? err.retryAfterMs : undefined;
      const delay = Math.min(policy.maxDelayMs * 6, Math.max(jittered, after ?? 0));
      onRetry?.(attempt + 1, delay, err);
      try {
        await sleep(delay, undefined, { signal });
      } catch {
        throw new AbortedError(signal?.reason);
      }
    }
  }
}
