import { connect } from 'node:net';
import { AbortedError, throwIfAborted } from '@lading/core';
import type { RegistryError } from '../../errors.js';
import {
  brokenRequest,
  dechunk,
  requestHead,
  socketAddress,
  splitHead,
  type Head,
} from './http1.js';
import { ERROR_BODY_CAP, errorFromBody } from './response.js';

/** SocketUploadRequest is one request whose body of known length the caller writes. */
export interface SocketUploadRequest {
  readonly method: string;
  readonly url: URL;
  /** headers go out as given, with `content-length: length` (no CR or LF in them). */
  readonly headers: Readonly<Record<string, string>>;
  readonly length: number;
  readonly signal?: AbortSignal | undefined;
  /** timeout (ms) bounds any silence of the connection, body and answer alike; 0 disables. */
  readonly timeout?: number | undefined;
}

/** Answer is a response of a {@link SocketUpload}: head and at most 64 KiB of body. */
export interface Answer extends Head {
  readonly body: Buffer;
}

/**
 * SocketUpload is one request on a connection of its own, its body written
 * chunk by chunk: each write resolves once the socket no longer needs the
 * chunk's memory, so a caller can lend it.
 */
export interface SocketUpload {
  /** write sends `chunk`. @throws NETWORK, ABORTED, or the registry's error when it answered early */
  write(chunk: Buffer): Promise<void>;
  /** answer resolves with the response once it is complete (call it after the last write). */
  answer(): Promise<Answer>;
  /** destroy drops the connection; a body cut short commits nothing. */
  destroy(): void;
}

/**
 * socketUpload opens a plain-HTTP request on a socket of its own and lets
 * the caller write its body. A registry that answers before the body ends
 * (a refusal) fails the writes with its error.
 * @throws ABORTED
 */
export function socketUpload(req: SocketUploadRequest): SocketUpload | undefined {
  throwIfAborted(req.signal);
  const head = requestHead(req.method, req.url, {
    ...req.headers,
    'content-length': String(req.length),
  });
  if (req.url.protocol !== 'http:' || head === undefined) return undefined;
  const socket = connect(socketAddress(req.url));
  const parts: Buffer[] = [];
  let bytes = 0;
  let answer: Answer | undefined;
  let failure: Error | undefined;
  let written = 0;
  let waiting: { resolve: (a: Answer) => void; reject: (e: Error) => void } | undefined;

  const settle = (): void => {
    if (waiting === undefined) return;
    // An answer, once there, outranks the failures that follow it.
    if (answer !== undefined) waiting.resolve(answer);
    else if (failure !== undefined) waiting.reject(failure);
  };
  const fail = (err: Error): void => {
    if (answer !== undefined) return;
    failure ??= err;
    socket.destroy();
    settle();
  };
  const broken = (why: string, cause?: unknown): RegistryError =>
    brokenRequest(req.method, req.url, why, cause);
  const onAbort = (): void => {
    fail(new AbortedError(req.signal?.reason));
  };
  /** tryAnswer parses what arrived; the answer is complete at its length or the connection's end. */
  const tryAnswer = (ended: boolean): void => {
    if (answer !== undefined || failure !== undefined) return;
    const split = splitHead(Buffer.concat(parts, bytes));
    if (split === 'partial') {
      if (ended) fail(broken('connection closed before the response'));
      return;
    }
    if (typeof split === 'string') {
      fail(broken(`response head ${split}`));
      return;
    }
    const { head: parsed, rest: raw } = split;
    if (parsed.status >= 100 && parsed.status < 200) {
      // An interim answer (100 Continue, 103 Early Hints): the real one follows.
      parts.length = 0;
      bytes = raw.length;
      if (bytes > 0) parts.push(raw);
      tryAnswer(ended);
      return;
    }
    const chunked = parsed.headers['transfer-encoding'] !== undefined;
    const decoded = chunked ? dechunk(raw) : { body: raw, complete: false };
    const body = decoded?.body ?? Buffer.alloc(0);
    const complete =
      decoded === undefined ||
      decoded.complete ||
      (!chunked && parsed.length !== undefined && body.length >= parsed.length) ||
      (!chunked && parsed.length === undefined && parsed.status === 204);
    if (!complete && !ended && raw.length < ERROR_BODY_CAP) return;
    answer = { ...parsed, body: body.subarray(0, Math.min(body.length, ERROR_BODY_CAP)) };
    req.signal?.removeEventListener('abort', onAbort);
    socket.destroy();
    settle();
  };
  socket.on('data', (chunk: Buffer) => {
    parts.push(chunk);
    bytes += chunk.length;
    tryAnswer(false);
  });
  socket.on('end', () => {
    tryAnswer(true);
  });
  socket.on('error', (err) => {
    // A registry that refused the body may have answered before the
    // connection broke: its answer is the better error.
    tryAnswer(true);
    fail(broken(err.message, err));
  });
  socket.on('close', () => {
    tryAnswer(true);
  });
  socket.on('timeout', () => {
    fail(broken(`no data either way for ${req.timeout ?? 0} ms`));
  });
  req.signal?.addEventListener('abort', onAbort, { once: true });
  // Idle both ways that long (a registry that stops reading the body, or
  // a source that stops giving it), the request fails, as undici's does.
  if ((req.timeout ?? 0) > 0) socket.setTimeout(req.timeout ?? 0);
  socket.write(head);

  /** early is the error of an answer that came before the whole body. */
  const early = (a: Answer): Error =>
    a.status >= 400
      ? errorFromBody(req.method, req.url, a.status, a.headers, a.body)
      : broken(`answered ${a.status} after ${written} of ${req.length} bytes`);

  return {
    write: (chunk) =>
      new Promise<void>((resolve, reject) => {
        if (answer !== undefined) {
          reject(early(answer));
          return;
        }
        if (failure !== undefined) {
          reject(failure);
          return;
        }
        written += chunk.length;
        socket.write(chunk, (err) => {
          // The socket holds the chunk until this callback, error or not.
          if (err === undefined || err === null) resolve();
          else reject(answer === undefined ? (failure ?? broken(err.message, err)) : early(answer));
        });
      }),
    answer: () =>
      new Promise<Answer>((resolve, reject) => {
        waiting = { resolve, reject };
        settle();
      }),
    destroy: () => {
      req.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
    },
  };
}
