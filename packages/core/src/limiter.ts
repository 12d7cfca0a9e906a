import { ErrorCode, LadingError } from './errors.js';

/**
 * Limiter is a counting semaphore bounding concurrent work: `run` starts
 * tasks in the order they ask, at most `max` at a time. It is the one
 * limiter of lading (copy, writeImage, extractVerified, remote's pushes).
 */
export class Limiter {
  #active = 0;
  readonly #queue: (() => void)[] = [];
  readonly #max: number;

  /** @throws INVALID_ARGUMENT when `max` is not an integer ≥ 1 */
  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) {
      throw new LadingError(ErrorCode.InvalidArgument, `concurrency must be ≥ 1, got ${max}`);
    }
    this.#max = max;
  }

  /** run waits for a free slot, then runs `fn` holding it; it settles as `fn` does. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#active >= this.#max) {
      // The releasing task hands its slot over: #active stays the same.
      await new Promise<void>((resolve) => this.#queue.push(resolve));
    } else {
      this.#active++;
    }
    try {
      return await fn();
    } finally {
      const next = this.#queue.shift();
      if (next === undefined) this.#active--;
      else next();
    }
  }
}
