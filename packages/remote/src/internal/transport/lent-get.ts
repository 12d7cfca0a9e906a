import { connect, type Socket } from 'node:net';
import { AbortedError, throwIfAborted } from '@lading/core';
import { RegistryError } from '../../errors.js';

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
/** BUFFERS_PER_GET bounds the memory one GET reads into (lent chunks included). */
const BUFFERS_PER_GET = 8;
/** HEAD_CAP is the most bytes of status line and headers accepted. */
const HEAD_CAP = 64 * 1024;
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

interface Head {
  readonly status: number;
  readonly length: number | undefined;
  /** plain says the body is exactly `length` bytes as sent (no transfer or content coding). */
  readonly plain: boolean;
}

function parseHead(text: string): Head | undefined {
  const lines = text.split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? '');
  if (status === null) return undefined;
  let length: number | undefined;
  let plain = true;
  let lengths = 0;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-length') {
      lengths++;
      length = /^\d{1,15}$/.test(value) ? Number(value) : undefined;
    } else if (name === 'transfer-encoding') {
      plain = false;
    } else if (name === 'content-encoding' && value.toLowerCase() !== 'identity') {
      plain = false;
    }
  }
  if (lengths !== 1) length = undefined;
  return { status: Number(status[1]), length, plain };
}

function requestText(get: LentGet): string | undefined {
  const { url } = get;
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`];
  for (const [name, value] of Object.entries(get.headers)) {
    if (/[\r\n:]/.test(name) || /[\r\n]/.test(value)) return undefined;
    lines.push(`${name}: ${value}`);
  }
  lines.push('accept-encoding: identity', 'connection: close', '', '');
  return lines.join('\r\n');
}

/**
 * lentGet sends a GET over a connection of its own and hands the body of a
 * `200` with a Content-Length (and no transfer or content coding) to `take`
 * chunk by chunk, reading into a few reused buffers: reading stops while
 * they are all lent, and a chunk's memory is read into again only once its
 * take has settled.
 *
 * It resolves true when the whole body was taken (every take settled), and
 * false, having taken nothing, for any other answer or when the request
 * failed before the body began: the caller then asks the usual way, which
 * follows redirects, answers challenges, retries and reports errors.
 * @throws ABORTED; once the body has begun, NETWORK (temporary) when the
 * connection fails or closes early, or whatever a take threw
 */
export async function lentGet(get: LentGet, take: Take): Promise<boolean> {
  throwIfAborted(get.signal);
  const request = requestText(get);
  if (get.url.protocol !== 'http:' || request === undefined) return false;
  return new Promise<boolean>((resolve, reject) => {
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

    const finish = (outcome: { value: boolean } | { error: unknown }): void => {
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
        error: new RegistryError({
          method: 'GET',
          url: get.url,
          cause: err,
          temporary: true,
          message: `request failed: ${err instanceof Error ? err.message : String(err)}`,
        }),
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
      const all = Buffer.concat(headParts, headBytes);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) {
        if (headBytes > HEAD_CAP) finish({ value: false });
        return undefined;
      }
      head = parseHead(all.toString('latin1', 0, end));
      if (head?.status !== 200 || head.length === undefined || !head.plain) {
        finish({ value: false });
        return undefined;
      }
      if (timeout > 0) socket.setTimeout(timeout);
      return all.subarray(end + 4);
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
      const replacement = free.pop();
      if (replacement === undefined) {
        // Cannot happen: reading resumes only once a buffer is free again.
        finish({ error: new Error('no free read buffer') });
        return false;
      }
      next = replacement;
      if (received === length) return false;
      if (free.length === 0) {
        paused = true;
        socket.setTimeout(0);
        return false;
      }
      return true;
    };

    const socket: Socket = connect({
      host: get.url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: Number(get.url.port || 80),
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
