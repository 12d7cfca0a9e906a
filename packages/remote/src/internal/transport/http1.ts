// The little of HTTP/1.1 that lading speaks on sockets of its own (lentGet,
// socketUpload): a request head, and a response head parsed strictly.
import { RegistryError } from '../../errors.js';
import type { Headers } from './response.js';

/** HEAD_CAP is the most bytes of status line and headers accepted. */
export const HEAD_CAP = 64 * 1024;

/** REDIRECTS are the statuses whose Location is followed (GET and HEAD). */
export const REDIRECTS: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);

/** MAX_HOPS bounds the redirects followed for one request. */
export const MAX_HOPS = 10;

/** brokenRequest is the temporary NETWORK error of a connection that failed mid-request. */
export function brokenRequest(
  method: string,
  url: URL,
  why: string,
  cause?: unknown,
): RegistryError {
  return new RegistryError({
    method,
    url,
    cause,
    temporary: true,
    message: `request failed: ${why}`,
  });
}

/**
 * splitHead finds the response head at the start of `all`: the head and
 * the bytes after it, `'partial'` while more may come, `'too large'` past
 * {@link HEAD_CAP}, `'malformed'` when it does not parse.
 */
export function splitHead(
  all: Buffer,
): { head: Head; rest: Buffer } | 'partial' | 'too large' | 'malformed' {
  const end = all.indexOf('\r\n\r\n');
  if (end < 0) return all.length > HEAD_CAP ? 'too large' : 'partial';
  const head = parseHead(all.toString('latin1', 0, end));
  return head === undefined ? 'malformed' : { head, rest: all.subarray(end + 4) };
}

/** Head is a response's status line and headers. */
export interface Head {
  readonly status: number;
  readonly headers: Headers;
  /** length is the one Content-Length, when there is exactly one and it is a number. */
  readonly length: number | undefined;
  /** plain says the body is exactly `length` bytes as sent (no transfer or content coding). */
  readonly plain: boolean;
}

/** parseHead reads a response head (without its closing blank line); undefined when malformed. */
export function parseHead(text: string): Head | undefined {
  const lines = text.split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? '');
  if (status === null) return undefined;
  const headers: Record<string, string | string[]> = {};
  let length: number | undefined;
  let plain = true;
  let lengths = 0;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const had = headers[name];
    headers[name] = had === undefined ? value : [...(Array.isArray(had) ? had : [had]), value];
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
  return { status: Number(status[1]), headers, length, plain };
}

/**
 * requestHead writes a request head that closes the connection after the
 * answer; undefined when a header name or value could split the head.
 */
export function requestHead(
  method: string,
  url: URL,
  headers: Readonly<Record<string, string>>,
): string | undefined {
  const lines = [`${method} ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`];
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n:]/.test(name) || /[\r\n]/.test(value)) return undefined;
    lines.push(`${name}: ${value}`);
  }
  lines.push('accept-encoding: identity', 'connection: close', '', '');
  return lines.join('\r\n');
}

/**
 * dechunk decodes a chunked body as far as it has arrived: the bytes so
 * far, and whether the last chunk was seen. Undefined when malformed.
 */
export function dechunk(raw: Buffer): { body: Buffer; complete: boolean } | undefined {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = raw.indexOf('\r\n', at);
    if (eol < 0) return { body: Buffer.concat(parts), complete: false };
    const size = /^([0-9a-fA-F]{1,8})(?:;.*)?$/.exec(raw.toString('latin1', at, eol));
    if (size === null) return undefined;
    const n = parseInt(size[1] ?? '', 16);
    if (n === 0) return { body: Buffer.concat(parts), complete: true };
    const end = Math.min(raw.length, eol + 2 + n);
    parts.push(raw.subarray(eol + 2, end));
    if (end + 2 > raw.length) return { body: Buffer.concat(parts), complete: false };
    at = end + 2;
  }
}

/** socketAddress is where net.connect goes for `url` (IPv6 literals without brackets). */
export function socketAddress(url: URL): { host: string; port: number } {
  return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port || 80) };
}
