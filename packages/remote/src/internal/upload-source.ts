import { Readable } from 'node:stream';

/**
 * parseRangeEnd reads `Range: 0-<last>` as the acknowledged length.
 * distribution answers `0-0` both for an empty upload and for one byte, so
 * `0-0` is treated as unknown (callers fall back to what they sent, or 0).
 */
export function parseRangeEnd(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(?:bytes=)?(\d+)-(\d+)$/.exec(value.trim());
  if (m === null) return undefined;
  const end = Number(m[2]);
  return end === 0 ? undefined : end + 1;
}

/**
 * watchSource remembers the first error a source stream reports by itself,
 * so that a failing layer source is reported as the cause instead of the
 * request error it provokes (which would look like a retryable network error).
 */
export function watchSource(source: Readable): {
  stream: Readable;
  error(): unknown;
  stop(): void;
} {
  let error: unknown;
  async function* guarded(): AsyncGenerator<Buffer> {
    // Only the source's own failures (thrown by next()) are recorded. A
    // consumer destroyed with an error (undici on a dropped connection)
    // throws into the generator at `yield`; depending on timing that lands
    // before or after the request fails (it does first on Node 26), and it
    // must not pass for the source's error.
    const it = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    let finished = false;
    try {
      for (;;) {
        let step: IteratorResult<Buffer>;
        try {
          step = await it.next();
        } catch (err) {
          finished = true;
          error ??= err;
          throw err;
        }
        if (step.done === true) {
          finished = true;
          return;
        }
        yield step.value;
      }
    } finally {
      // Stopped early (return or throw at yield): release the source.
      if (!finished) await it.return?.();
    }
  }
  return {
    stream: Readable.from(guarded(), { objectMode: false }),
    error: () => error,
    stop: () => undefined,
  };
}
