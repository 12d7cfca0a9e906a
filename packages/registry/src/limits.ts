import type { IncomingMessage } from 'node:http';
import { HttpError, SpecErrorCode } from './errors.js';

/** WindowLimit allows `count` events per key within `perSeconds`. */
export interface WindowLimit {
  readonly count: number;
  readonly perSeconds: number;
}

/**
 * WindowCounter counts events per key in fixed windows and answers 429
 * TOOMANYREQUESTS (with `Retry-After`) past the limit. It forgets every key
 * once it tracks more than 10000, so it never grows without bound.
 */
export class WindowCounter {
  readonly #limit: WindowLimit;
  readonly #windows = new Map<string, { start: number; count: number }>();

  constructor(limit: WindowLimit) {
    this.#limit = limit;
  }

  #window(key: string, now: number): { start: number; count: number } {
    const windowMs = this.#limit.perSeconds * 1000;
    let w = this.#windows.get(key);
    if (w === undefined || now - w.start >= windowMs) {
      if (this.#windows.size > 10_000) this.#windows.clear();
      w = { start: now, count: 0 };
      this.#windows.set(key, w);
    }
    return w;
  }

  /**
   * check throws when any of `keys` has used up its window.
   * @throws HttpError 429 TOOMANYREQUESTS
   */
  check(keys: readonly string[], message?: string): void {
    const now = Date.now();
    for (const key of keys) {
      const w = this.#window(key, now);
      if (w.count >= this.#limit.count) {
        const retry = Math.ceil((w.start + this.#limit.perSeconds * 1000 - now) / 1000);
        throw new HttpError(429, SpecErrorCode.TooManyRequests, message, undefined, {
          'Retry-After': String(Math.max(1, retry)),
        });
      }
    }
  }

  /** add counts one event (or `-1`: takes one back) for each of `keys`. */
  add(keys: readonly string[], n = 1): void {
    const now = Date.now();
    for (const key of keys) {
      const w = this.#window(key, now);
      w.count = Math.max(0, w.count + n);
    }
  }
}

/**
 * RequestRate limits the requests of each client address to `requests`
 * per `perSeconds` (fixed windows); no limit when `rate` is undefined.
 */
export class RequestRate {
  readonly #counter: WindowCounter | undefined;

  constructor(rate: { readonly requests: number; readonly perSeconds: number } | undefined) {
    this.#counter =
      rate === undefined
        ? undefined
        : new WindowCounter({ count: rate.requests, perSeconds: rate.perSeconds });
  }

  /**
   * throttle counts one request from the address of `req`.
   * @throws HttpError 429 TOOMANYREQUESTS once the address has used up its window
   */
  throttle(req: IncomingMessage): void {
    const keys = [req.socket.remoteAddress ?? ''];
    this.#counter?.check(keys);
    this.#counter?.add(keys);
  }
}
