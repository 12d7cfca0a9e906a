import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { AbortedError, isLadingError, readCapped } from '@lading/core';
import { RegistryError, type RegistryErrorDetail } from '../../errors.js';
import { parseRetryAfter } from '../challenge.js';
import { isNetworkError } from './retry.js';

/** ERROR_BODY_CAP is the most bytes read from an error body. */
export const ERROR_BODY_CAP = 64 * 1024;

/** Headers are response headers as undici returns them. */
export type Headers = Record<string, string | string[] | undefined>;

/** SendResponse is one answer, after any redirects were followed. */
export interface SendResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Dispatcher.ResponseData['body'];
  /** url is the final URL (after redirects). */
  readonly url: URL;
  /** redirected says the final URL differs from the requested one. */
  readonly redirected: boolean;
}

/** header returns the first value of a response header. */
export function header(headers: Headers, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** drain consumes and discards a response body. */
export async function drain(body: SendResponse['body']): Promise<void> {
  try {
    await body.dump({ limit: 256 * 1024 });
  } catch {
    // a body we do not need; errors reading it do not matter
  }
}

/** discard stops a response body without reading it. */
export function discard(body: SendResponse['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

/**
 * readWhole reads a whole body (a manifest, a page of a listing, a config)
 * capped at `max` bytes (MANIFEST_TOO_LARGE past it). A connection that
 * drops or stalls before its end is a RegistryError, temporary like a
 * request that failed to connect, so that a retry reads it again (and the
 * CLI answers NETWORK); an abort is ABORTED.
 * @throws MANIFEST_TOO_LARGE, NETWORK, ABORTED
 */
export async function readWhole(
  body: Readable,
  max: number,
  request: { readonly method: string; readonly url: URL | string },
  signal?: AbortSignal,
): Promise<Buffer> {
  try {
    return await readCapped(body, max, signal);
  } catch (err) {
    throw bodyError(err, request.url, signal, request.method);
  }
}

/**
 * requestFailure types a request that failed before its answer was read
 * whole (`what` says where: "request failed", "reading the response
 * failed"): ABORTED when `signal` fired, a LadingError as it is, anything
 * else a RegistryError (NETWORK, temporary for a dropped connection or a
 * timeout).
 */
export function requestFailure(
  err: unknown,
  method: string,
  url: URL | string,
  signal: AbortSignal | undefined,
  what: string,
): Error {
  if (signal?.aborted === true) return new AbortedError(signal.reason);
  if (isLadingError(err)) return err;
  return new RegistryError({
    method,
    url: new URL(url),
    cause: err,
    temporary: isNetworkError(err),
    message: `${what}: ${err instanceof Error ? err.message : String(err)}`,
  });
}

/** bodyError is {@link requestFailure} for a response body that failed while it was read. */
export function bodyError(
  err: unknown,
  url: URL | string,
  signal?: AbortSignal,
  method = 'GET',
): Error {
  return requestFailure(err, method, url, signal, 'reading the response failed');
}

/** specErrors picks the distribution spec's `errors[]` out of a parsed error body. */
function specErrors(parsed: { errors?: unknown }): RegistryErrorDetail[] {
  if (!Array.isArray(parsed.errors)) return [];
  return parsed.errors
    .filter(
      (e): e is { code: unknown; message?: unknown; detail?: unknown } =>
        typeof e === 'object' && e !== null,
    )
    .map((e) => ({
      code: String(e.code),
      ...(typeof e.message === 'string' ? { message: e.message } : {}),
      ...(e.detail === undefined ? {} : { detail: e.detail }),
    }));
}

/**
 * errorFromResponse reads at most 64 KiB of an error body and builds the
 * RegistryError, with the spec's `errors[]` when the body has them.
 */
export async function errorFromResponse(
  method: string,
  res: SendResponse,
  message?: string,
): Promise<RegistryError> {
  let body: Buffer = Buffer.alloc(0);
  try {
    // Past the cap readCapped throws, and the catch below leaves errors empty.
    body = await readCapped(res.body, ERROR_BODY_CAP);
  } catch {
    // cut off: the status says enough
  }
  return errorFromBody(method, res.url, res.status, res.headers, body, message);
}

/** errorFromBody builds the RegistryError of an answer whose body (at most 64 KiB) is at hand. */
export function errorFromBody(
  method: string,
  url: URL,
  status: number,
  headers: Headers,
  body: Buffer,
  message?: string,
): RegistryError {
  let errors: RegistryErrorDetail[] = [];
  try {
    if (body.length > 0) errors = specErrors(JSON.parse(body.toString('utf8')) as object);
  } catch {
    // not JSON: the status says enough
  }
  return new RegistryError({
    method,
    url,
    status,
    errors,
    retryAfterMs: parseRetryAfter(headers['retry-after']),
    ...(message === undefined ? {} : { message }),
  });
}
