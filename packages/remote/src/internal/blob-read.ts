import { Readable } from 'node:stream';
import type { Digest } from '@lading/core';
import { discard, drain, header, type Transport } from './transport/index.js';

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
  return Readable.from(skipGen(body, start, end), { objectMode: false });
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
