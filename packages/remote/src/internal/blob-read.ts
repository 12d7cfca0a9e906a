import { Readable, type Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Digest } from '@lading/core';
import { RegistryError } from '../errors.js';
import {
  backoffMs,
  bodyError,
  discard,
  drain,
  header,
  isTemporary,
  markExhausted,
  type SendResponse,
  type Transport,
} from './transport/index.js';

async function* skipGen(
  body: Readable,
  start: number,
  end: number | undefined,
): AsyncGenerator<Buffer> {
  let pos = 0;
  for await (const c of body) {
    const b = c as Buffer;
    const from = Math.max(0, start - pos);
    const to = end === undefined ? b.length : Math.min(b.length, end + 1 - pos);
    if (to > from) yield b.subarray(from, to);
    pos += b.length;
    if (end !== undefined && pos > end) break;
  }
}

/**
 * skipTo cuts bytes [start, end] (inclusive) out of a full body, for a
 * server that ignored a Range request.
 */
export function skipTo(body: Readable, start: number, end: number | undefined): Readable {
  const out = Readable.from(skipGen(body, start, end), { objectMode: false });
  // Destroyed before its first read, the generator never ran: close the body here.
  out.once('close', () => {
    if (!body.destroyed) body.destroy();
  });
  return out;
}

/**
 * followBlob resolves where a blob's bytes really are: it follows the
 * registry's redirects with HEAD; when HEAD was answered directly, it asks
 * with a GET that does not follow (stopped before any data on a 200), then
 * follows that redirect with HEAD. Credentials stay on the registry's origin.
 * @throws NOT_FOUND, UNAUTHORIZED, NETWORK
 */
export async function followBlob(
  t: Transport,
  repo: string,
  digest: Digest,
  signal: AbortSignal | undefined,
): Promise<string> {
  const scopes = [`repository:${repo}:pull`];
  const path = `/v2/${repo}/blobs/${digest}`;
  const head = await t.exchange(
    {
      method: 'HEAD',
      url: path,
      scopes,
      signal,
      followRedirects: true,
    },
    (r) => r.status === 200,
  );
  await drain(head.body);
  if (head.redirected) return head.url.toString();
  // Many registries answer HEAD themselves and redirect only GET: ask with a
  // GET that does not follow, and stop it before any data when it is a 200.
  const get = await t.exchange(
    { method: 'GET', url: path, scopes, signal },
    (r) => r.status === 200 || (r.status >= 300 && r.status < 400),
  );
  const location = header(get.headers, 'location');
  if (get.status === 200) discard(get.body);
  else await drain(get.body);
  if (get.status === 200 || location === undefined) return get.url.toString();
  const target = new URL(location, get.url);
  const res = await t.exchange(
    { method: 'HEAD', url: target, signal, followRedirects: true },
    (r) => r.status < 400,
  );
  await drain(res.body);
  return res.url.toString();
}

/**
 * feedResuming pipes a whole blob's body into `into` (the verifier handed
 * to the reader) and ends it. When the connection drops mid-body, it asks
 * the registry again for the rest (`Range: bytes=N-`, N the bytes already
 * passed on) and goes on from there, as skopeo and containerd do; a
 * registry that ignores the range is read past the first N bytes. Each
 * attempt that brings no byte counts against the transport's retries, so
 * a blob keeps coming as long as every connection brings some of it
 * (`retry: false` asks for nothing again). A failure after the retries, or
 * one that is not temporary, destroys `into` with the (typed) error.
 * Destroying `into` stops the body.
 */
export function feedResuming(
  t: Transport,
  repo: string,
  digest: Digest,
  first: SendResponse,
  into: Writable,
  signal: AbortSignal | undefined,
  size?: number,
): void {
  let received = 0;
  let fruitless = 0;
  let body: Readable = first.body;
  into.once('close', () => {
    body.destroy();
  });
  const attach = (res: SendResponse, stream: Readable): void => {
    body = stream;
    if (into.destroyed) {
      stream.destroy();
      return;
    }
    let got = 0;
    stream.pipe(into, { end: false });
    stream.on('data', (c: Buffer) => {
      received += c.length;
      got += c.length;
    });
    stream.once('end', () => {
      into.end();
    });
    stream.once('error', (err: unknown) => {
      stream.unpipe(into);
      if (into.destroyed) return;
      // Cut after its last byte (a chunked body before its last chunk):
      // nothing to ask for; the verifier has the last word.
      if (size !== undefined && received === size) {
        into.end();
        return;
      }
      const typed = bodyError(err, res.url, signal);
      fruitless = got > 0 ? 0 : fruitless + 1;
      if (
        signal?.aborted === true ||
        !isTemporary(typed) ||
        t.retry.retries === 0 ||
        fruitless > t.retry.retries
      ) {
        // Asked again already: an enclosing retry does not start over.
        if (fruitless > 0) markExhausted(typed);
        into.destroy(typed);
        return;
      }
      // An attempt that brought nothing waits, as a retry does.
      const wait = fruitless === 0 ? 0 : backoffMs(t.retry, fruitless - 1);
      sleep(wait, undefined, signal === undefined ? {} : { signal })
        .then(() => rest(t, repo, digest, received, signal))
        .then(
          (next) => {
            attach(next.res, next.body);
          },
          (e: unknown) => {
            if (signal?.aborted === true) into.destroy(bodyError(e, res.url, signal));
            else into.destroy(e instanceof Error ? e : typed);
          },
        );
    });
  };
  attach(first, first.body);
}

/**
 * rest asks for a blob's bytes from `from` on: a 200 is read past them, a
 * 416 saying the blob is `from` bytes long is an empty rest.
 */
async function rest(
  t: Transport,
  repo: string,
  digest: Digest,
  from: number,
  signal: AbortSignal | undefined,
): Promise<{ res: SendResponse; body: Readable }> {
  const res = await t.exchange(
    {
      method: 'GET',
      url: `/v2/${repo}/blobs/${digest}`,
      headers: { range: `bytes=${from}-` },
      scopes: [`repository:${repo}:pull`],
      signal,
      followRedirects: true,
    },
    (r) => r.status === 200 || r.status === 206 || r.status === 416,
  );
  if (res.status === 200) return { res, body: skipTo(res.body, from, undefined) };
  if (res.status === 416) {
    await drain(res.body);
    // `bytes */N`: the blob is N bytes long; from N on there is nothing.
    const whole = /^bytes \*\/(\d+)$/.exec(header(res.headers, 'content-range') ?? '')?.[1];
    if (whole !== undefined && Number(whole) === from) return { res, body: Readable.from([]) };
  }
  const start = /^bytes (\d+)-/.exec(header(res.headers, 'content-range') ?? '')?.[1];
  if (start === undefined || Number(start) !== from) {
    discard(res.body);
    throw new RegistryError({
      method: 'GET',
      url: res.url.toString(),
      status: res.status,
      temporary: false,
      message: `asked for the blob from byte ${from}, got Content-Range ${JSON.stringify(header(res.headers, 'content-range') ?? '')}`,
    });
  }
  return { res, body: res.body };
}
