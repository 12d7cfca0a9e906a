import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import type { Hash } from 'node:crypto';
import { HttpError, SpecErrorCode } from '../errors.js';

/** Headers every response carries. */
export const baseHeaders = { 'Docker-Distribution-API-Version': 'registry/2.0' } as const;

/** send writes a complete response (no body on HEAD). */
export function send(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  headers: Record<string, string | number | string[]>,
  body?: string | Buffer,
): void {
  const all: Record<string, string | number | string[]> = { ...baseHeaders, ...headers };
  if (body !== undefined && all['Content-Length'] === undefined) {
    all['Content-Length'] = Buffer.byteLength(body);
  }
  all['Content-Length'] ??= 0;
  // An unread request body would be drained after the response; close instead.
  if (!req.complete && hasBody(req)) all.Connection = 'close';
  res.writeHead(status, all);
  if (req.method === 'HEAD' || body === undefined) res.end();
  else res.end(body);
}

/** sendJson writes a JSON document. */
export function sendJson(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string | number | string[]> = {},
): void {
  send(req, res, status, { 'Content-Type': 'application/json', ...headers }, JSON.stringify(value));
}

/** sendError writes a spec error document. */
export function sendError(req: IncomingMessage, res: ServerResponse, err: HttpError): void {
  send(req, res, err.status, { 'Content-Type': 'application/json', ...err.headers }, err.body());
}

/** hasBody tells whether a request carries a body. */
export function hasBody(req: IncomingMessage): boolean {
  const te = req.headers['transfer-encoding'];
  if (te !== undefined && te !== '') return true;
  const cl = req.headers['content-length'];
  return cl !== undefined && cl !== '0';
}

/** contentLength parses Content-Length, or undefined when absent. */
export function contentLength(req: IncomingMessage): number | undefined {
  const cl = req.headers['content-length'];
  if (cl === undefined) return undefined;
  if (!/^\d+$/.test(cl)) throw new HttpError(400, SpecErrorCode.SizeInvalid, 'bad Content-Length');
  return Number(cl);
}

/** readCapped buffers a request body of at most `limit` bytes. */
export async function readCapped(
  req: IncomingMessage,
  limit: number,
  tooLarge: () => HttpError,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** HashCounterOptions add checks to a {@link HashCounter}. */
export interface HashCounterOptions {
  /** overLimit makes the error for more than `limit` bytes (default 400 SIZE_INVALID). */
  readonly overLimit?: (() => HttpError) | undefined;
  /** admit is asked about every chunk; an error it answers fails the stream. */
  readonly admit?: ((bytes: number) => HttpError | undefined) | undefined;
}

/**
 * HashCounter passes bytes through, hashing and counting them, and fails
 * as soon as more than `limit` bytes arrive or `admit` refuses a chunk.
 */
export class HashCounter extends Transform {
  readonly #hash: Hash | undefined;
  readonly #limit: number;
  readonly #options: HashCounterOptions;
  count = 0;

  constructor(
    hash: Hash | undefined,
    limit = Number.POSITIVE_INFINITY,
    options: HashCounterOptions = {},
  ) {
    super();
    this.#hash = hash;
    this.#limit = limit;
    this.#options = options;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.count += chunk.length;
    if (this.count > this.#limit) {
      cb(
        this.#options.overLimit?.() ??
          new HttpError(400, SpecErrorCode.SizeInvalid, 'more bytes than the declared range'),
      );
      return;
    }
    const refused = this.#options.admit?.(chunk.length);
    if (refused !== undefined) {
      cb(refused);
      return;
    }
    this.#hash?.update(chunk);
    cb(null, chunk);
  }
}

/** splitUrl splits a request URL into its undecoded path and its query. */
export function splitUrl(url: string | undefined): { path: string; query: URLSearchParams } {
  const u = url ?? '/';
  const q = u.indexOf('?');
  return q < 0
    ? { path: u, query: new URLSearchParams() }
    : { path: u.slice(0, q), query: new URLSearchParams(u.slice(q + 1)) };
}

/** origin is the absolute origin a client used to reach this server. */
export function originOf(req: IncomingMessage): string {
  return `http://${req.headers.host ?? '127.0.0.1'}`;
}
