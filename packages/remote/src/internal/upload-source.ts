import { finished, Readable } from 'node:stream';

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
 * watchSource relays a source stream chunk by chunk and remembers the first
 * error the source reports by itself, so that a failing layer source is
 * reported as the cause instead of the request error it provokes (which
 * would look like a retryable network error).
 *
 * The relay takes the source's chunks as they are pushed ('data' events)
 * and hands on the same buffers: an async iterator would read() whatever
 * is buffered, concatenated into a fresh buffer — for a layer, several
 * compressed blocks copied once more on the main thread. Only the source's
 * own failures are recorded: when the consumer is destroyed (undici on a
 * dropped connection), the source is destroyed without an error, and the
 * premature close that follows is not the source's.
 */
export function watchSource(source: Readable): {
  stream: Readable;
  error(): unknown;
  stop(): void;
} {
  let error: unknown;
  let settled = false;
  const onData = (chunk: Buffer): void => {
    if (!stream.push(chunk)) source.pause();
  };
  const stream = new Readable({
    read() {
      source.resume();
    },
    destroy(err, callback) {
      if (!settled) {
        // Stopped early: release the source.
        settled = true;
        source.off('data', onData);
        source.destroy();
      }
      callback(err);
    },
  });
  source.pause();
  source.on('data', onData);
  finished(source, { writable: false }, (err) => {
    if (settled) return;
    settled = true;
    source.off('data', onData);
    if (err === undefined || err === null) {
      stream.push(null);
      return;
    }
    error ??= err;
    stream.destroy(err);
  });
  return { stream, error: () => error, stop: () => undefined };
}
