import { connect, type Socket } from 'node:net';
import { AbortedError, ErrorCode, LadingError, throwIfAborted } from '@lading/core';
import {
  REDIRECTS,
  brokenRequest,
  requestHead,
  socketAddress,
  splitHead,
  type Head,
} from './http1.js';

/**
 * Take receives one chunk of a body. The chunk is lent: its memory is read
 * into again once the returned promise has settled, so a taker that keeps
 * the bytes copies them first. Chunks come in order.
 */
export type Take = (chunk: Buffer) => Promise<void> | void;

/** LentGet is one plain-HTTP GET whose body is handed out in lent chunks. */
export interface LentGet {
  readonly url: URL;
  /** headers go out as given (no CR or LF in names or values). */
  readonly headers: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal | undefined;
  /** timeout (ms) bounds the wait for the head and each gap in the body while the taker keeps up; 0 disables. */
  readonly timeout?: number | undefined;
}

/** READ_SIZE is the size of one read buffer. */
const READ_SIZE = 256 * 1024;
/** BUFFERS_PER_GET is the memory one GET reads into (lent chunks included). */
const BUFFERS_PER_GET = 8;
/** BUFFERS_MAX bounds it when reads come while paused. */
const BUFFERS_MAX = 2 * BUFFERS_PER_GET;
/** SPARE_CAP bounds the read buffers kept between GETs. */
const SPARE_CAP = 16;

// Read buffers outlive their GET: memory this process has touched once does
// not fault again (a fresh buffer per read is what makes Node's own readers
// slow on machines where page faults are dear).
const spare: Buffer[] = [];

function takeBuffer(): Buffer {
  return spare.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE);
}

function giveBack(buffers: Buffer[]): void {
  for (const b of buffers) if (spare.length < SPARE_CAP) spare.push(b);
}

/** redirectOf is where a redirect answer points, resolved against `url`. */
function redirectOf(head: Head, url: URL): URL | undefined {
  const location = head.headers.location;
  if (!REDIRECTS.has(head.status) || typeof location !== 'string') return undefined;
  try {
    return new URL(location, url);
  } catch {
    return undefined;
  }
}

/**
 * lentGet sends a GET over a connection of its own and hands the body of a
 * `200` with a Content-Length (and no transfer or content coding) to `take`
 * chunk by chunk, reading into a few reused buffers: reading stops while
 * they are all lent, and a chunk's memory is read into again only once its
 * take has settled.
 *
 * It resolves true when the whole body was taken (every take settled); the
 * URL a redirect points to, having taken nothing (the caller decides
 * whether to follow it, and with which credentials); and false, having
 * taken nothing, for any other answer or when the request failed before
 * the body began: the caller then asks the usual way, which answers
 * challenges, retries and reports errors.
 * @throws ABORTED; once the body has begun, NETWORK (temporary) when the
 * connection fails or closes early, or whatever a take threw
 */
export async function lentGet(get: LentGet, take: Take): Promise<boolean | URL> {
  throwIfAborted(get.signal);
  const request = requestHead('GET', get.url, get.headers);
  if (get.url.protocol !== 'http:' || request === undefined) return false;
  return new Promise<boolean | URL>((resolve, reject) => {
    let next = takeBuffer();
    const free: Buffer[] = [];
    for (let i = 1; i < BUFFERS_PER_GET; i++) free.push(takeBuffer());
    const own = [next, ...free];
    const headParts: Buffer[] = [];
    let headBytes = 0;
    let head: Head | undefined;
    let received = 0;
    let lent = 0;
    let paused = false;
    let settled = false;
    const timeout = get.timeout ?? 0;

    const finish = (outcome: { value: boolean | URL } | { error: unknown }): void => {
      if (settled) return;
      settled = true;
      get.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      // Buffers still lent go back only once their takes settle (below).
      if (lent === 0) giveBack(own);
      if ('error' in outcome) {
        const { error } = outcome;
        reject(error instanceof Error ? error : new Error(String(error)));
      } else resolve(outcome.value);
    };
    const fail = (err: unknown): void => {
      if (head === undefined || received === 0) {
        // Nothing was taken: the usual request reports this failure (or
        // succeeds on its retry).
        if (get.signal?.aborted === true) finish({ error: new AbortedError(get.signal.reason) });
        else finish({ value: false });
        return;
      }
      finish({
        error: brokenRequest('GET', get.url, err instanceof Error ? err.message : String(err), err),
      });
    };
    const onAbort = (): void => {
      finish({ error: new AbortedError(get.signal?.reason) });
    };
    const maybeDone = (): void => {
      if (head?.length !== undefined && received === head.length && lent === 0) {
        finish({ value: true });
      }
    };
    /** release takes back a lent chunk; `buffer` is its read buffer (none for the head's copy). */
    const release = (buffer: Buffer | undefined): void => {
      lent--;
      if (settled) {
        if (lent === 0) giveBack(own);
        return;
      }
      if (buffer !== undefined) free.push(buffer);
      if (paused) {
        paused = false;
        if (timeout > 0) socket.setTimeout(timeout);
        socket.resume();
      }
      maybeDone();
    };
    /** lend hands `chunk` (read into `buffer`) to the taker; false when the take threw. */
    const lend = (buffer: Buffer | undefined, chunk: Buffer): boolean => {
      lent++;
      let taking: Promise<void> | void;
      try {
        taking = take(chunk);
      } catch (err) {
        lent--;
        finish({ error: err });
        return false;
      }
      Promise.resolve(taking).then(
        () => {
          release(buffer);
        },
        (err: unknown) => {
          // Failed first: the release must not finish the GET as taken.
          finish({ error: err });
          release(buffer);
        },
      );
      return true;
    };
    /** onHead gathers the head; it answers the body bytes that came with it, or undefined. */
    const onHead = (bytes: Buffer): Buffer | undefined => {
      // The head is copied out: the read buffer is read into again.
      headParts.push(Buffer.from(bytes));
      headBytes += bytes.length;
      const split = splitHead(Buffer.concat(headParts, headBytes));
      if (split === 'partial') return undefined;
      if (typeof split === 'string') {
        finish({ value: false });
        return undefined;
      }
      const h = split.head;
      head = h;
      const location = redirectOf(h, get.url);
      if (location !== undefined) {
        finish({ value: location });
        return undefined;
      }
      if (h.status !== 200 || h.length === undefined || !h.plain) {
        finish({ value: false });
        return undefined;
      }
      if (timeout > 0) socket.setTimeout(timeout);
      return split.rest;
    };
    const onRead = (n: number, buffer: Buffer): boolean => {
      if (settled) return false;
      let body = buffer.subarray(0, n);
      let copied = false;
      if (head === undefined) {
        const rest = onHead(body);
        if (rest === undefined) return !settled;
        body = rest;
        copied = true;
      }
      // onHead refused every head without a length.
      const length = head?.length ?? 0;
      if (received + body.length > length) body = body.subarray(0, length - received);
      if (body.length === 0) {
        maybeDone();
        return !settled;
      }
      received += body.length;
      if (copied) {
        // The body's first bytes came with the head, in a copy of their
        // own: the read buffer stays free.
        return lend(undefined, body) && received < length;
      }
      if (!lend(buffer, body)) return false;
      let replacement = free.pop();
      if (replacement === undefined) {
        // A read while paused (Node's stream machinery may start one): it
        // went into the spare `next`; one more buffer takes its place.
        if (own.length >= BUFFERS_MAX) {
          finish({ error: new LadingError(ErrorCode.Io, 'lent GET: read buffers exhausted') });
          return false;
        }
        replacement = takeBuffer();
        own.push(replacement);
      }
      next = replacement;
      if (received === length) return false;
      if (free.length === 0) {
        paused = true;
        socket.setTimeout(0);
        // pause() also stops the stream machinery from reading on its own.
        socket.pause();
        return false;
      }
      return true;
    };

    const socket: Socket = connect({
      ...socketAddress(get.url),
      onread: { buffer: () => next, callback: onRead },
    });
    socket.on('error', fail);
    socket.on('timeout', () => {
      fail(new Error(`no data for ${timeout} ms`));
    });
    socket.on('end', () => {
      if (head?.length !== undefined && received === head.length) maybeDone();
      else fail(new Error(`connection closed after ${received} bytes of the body`));
    });
    socket.on('close', () => {
      if (!(head?.length !== undefined && received === head.length)) {
        fail(new Error(`connection closed after ${received} bytes of the body`));
      }
    });
    if (timeout > 0) socket.setTimeout(timeout);
    get.signal?.addEventListener('abort', onAbort, { once: true });
    socket.write(request);
  });
}
