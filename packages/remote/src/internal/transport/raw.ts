import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { request } from './undici.js';
import { throwIfAborted } from '@lading/core';
import { requestFailure, type SendResponse } from './response.js';

/** Body is what a request may carry. */
export type Body = string | Buffer | Uint8Array | Readable | null;

/** Connection is how requests leave: the pool, the User-Agent and the timeouts. */
export interface Connection {
  readonly dispatcher: Dispatcher;
  readonly userAgent: string;
  readonly headersTimeout?: number | undefined;
  readonly bodyTimeout?: number | undefined;
}

/** RawSend performs one request exactly as given: no credentials, no redirects, no retries. */
export type RawSend = (
  method: string,
  url: URL,
  headers: Record<string, string>,
  body: Body | undefined,
  signal: AbortSignal | undefined,
) => Promise<SendResponse>;

/**
 * rawSender sends over `conn`. A failed request becomes a RegistryError
 * (temporary when the connection dropped), an abort an AbortedError.
 */
export function rawSender(conn: Connection): RawSend {
  return async (method, url, headers, body, signal) => {
    throwIfAborted(signal);
    // undici takes a connection back only one event-loop turn after its
    // answer (a setImmediate that lets a server's late FIN or stray bytes
    // arrive first); a request made in the same turn, as a chain of awaits
    // does, found every connection busy and opened a new one (and, over
    // https, paid a handshake). Waiting for that turn reuses it.
    await new Promise<void>((resolve) => setImmediate(resolve));
    throwIfAborted(signal);
    try {
      const res = await request(url, {
        method,
        headers: { 'user-agent': conn.userAgent, ...headers },
        body: body ?? null,
        dispatcher: conn.dispatcher,
        signal: signal ?? null,
        ...(conn.headersTimeout === undefined ? {} : { headersTimeout: conn.headersTimeout }),
        ...(conn.bodyTimeout === undefined ? {} : { bodyTimeout: conn.bodyTimeout }),
        // undici closes the connection after every HEAD (against servers
        // that answer HEAD with a body), so the request after each HEAD
        // paid a new connection (and a TLS handshake). Registries answer
        // HEAD without one; a body sent anyway makes undici drop that
        // connection and go on on a new one.
        ...(method === 'HEAD' ? { reset: false } : {}),
      });
      return {
        status: res.statusCode,
        headers: res.headers,
        body: res.body,
        url,
        redirected: false,
      };
    } catch (err) {
      throw requestFailure(err, method, url, signal, 'request failed');
    }
  };
}
