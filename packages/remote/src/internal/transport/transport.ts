import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { AbortedError, ErrorCode, throwIfAborted } from '@lading/core';
import { deferred, type Deferred } from '@lading/core/internal';
import { RegistryError } from '../../errors.js';
import { Authenticator, type CredentialOptions } from './auth.js';
import { rawSender, type Body, type RawSend } from './raw.js';
import { drain, errorFromResponse, header, readWhole, type SendResponse } from './response.js';
import {
  retryPolicy,
  withRetry,
  type OnRetry,
  type RetryOptions,
  type RetryPolicy,
} from './retry.js';
import { registryBase, type SchemeOptions } from './scheme.js';
import { MAX_HOPS, REDIRECTS } from './http1.js';
import { lentGet, type Take } from './lent-get.js';
import { socketUpload, type SocketUpload } from './socket-upload.js';

/** TransportOptions configure how requests reach a registry and authenticate. */
export interface TransportOptions extends CredentialOptions, SchemeOptions {
  /**
   * headersTimeout (ms) bounds the wait for response headers, refreshed while
   * a request body flows: a stream layer whose producer stalls longer fails
   * its PATCH. Default 300 000; 0 disables.
   */
  readonly headersTimeout?: number | undefined;
  /** bodyTimeout (ms) bounds the gap between response body chunks. Default 300 000; 0 disables. */
  readonly bodyTimeout?: number | undefined;
  /** ca adds trusted certificate authorities (PEM) for https registries. */
  readonly ca?: string | Buffer | readonly (string | Buffer)[] | undefined;
  /** userAgent is sent with every request (default `lading/0.1`). */
  readonly userAgent?: string | undefined;
  /** dispatcher is the undici connection pool to use (default: one chosen by the session). */
  readonly dispatcher?: Dispatcher | undefined;
  /** connections caps connections per origin of a pool the session builds (default 16). */
  readonly connections?: number | undefined;
  /** retry tunes retries of temporary failures; false turns them off. */
  readonly retry?: RetryOptions | false | undefined;
}

/** SendRequest is one request to {@link Transport.send}. */
export interface SendRequest {
  readonly method: string;
  /** url is absolute, or a path resolved against the registry base. */
  readonly url: string | URL;
  readonly headers?: Record<string, string>;
  readonly body?: Body;
  /** scopes the request needs (`repository:name:pull,push`). */
  readonly scopes?: readonly string[];
  readonly signal?: AbortSignal | undefined;
  /** followRedirects for GET/HEAD (3xx); never sends credentials to another origin. */
  readonly followRedirects?: boolean;
}

/**
 * Transport talks to one registry host within one session: it sends
 * credentials only to that host's origin, answers auth challenges once per
 * request, and follows redirects without credentials. Its ping and its
 * {@link Authenticator} (tokens) are shared by everything using the session.
 */
export class Transport {
  readonly registry: string;
  readonly base: URL;
  readonly dispatcher: Dispatcher;
  readonly userAgent: string;
  readonly retry: RetryPolicy;
  readonly auth: Authenticator;
  readonly #raw: RawSend;
  /** #ownSockets says blob bodies may go over connections of lading's own (lentGet, socketUpload). */
  readonly #ownSockets: boolean;
  readonly #bodyTimeout: number;
  readonly #headersTimeout: number;
  #pinged: Promise<void> | undefined;
  /**
   * #learned settles once this transport has heard from the registry: the
   * ping's answer, or the first request's (which stands in for the ping).
   * It never rejects.
   */
  #learned: Deferred<undefined> | undefined;

  constructor(registry: string, options: TransportOptions, dispatcher: Dispatcher) {
    this.registry = registry;
    this.base = registryBase(registry, options);
    this.dispatcher = dispatcher;
    this.userAgent = options.userAgent ?? 'lading/0.1';
    this.retry = retryPolicy(options.retry);
    this.#raw = rawSender({
      dispatcher,
      userAgent: this.userAgent,
      headersTimeout: options.headersTimeout,
      bodyTimeout: options.bodyTimeout,
    });
    this.auth = new Authenticator(registry, this.base, options, this.#raw);
    this.#ownSockets = options.dispatcher === undefined && this.base.protocol === 'http:';
    this.#bodyTimeout = options.bodyTimeout ?? 300_000;
    this.#headersTimeout = options.headersTimeout ?? 300_000;
  }

  /** url resolves a registry path. */
  url(path: string): URL {
    return new URL(path, this.base);
  }

  /**
   * ping GETs `/v2/` once per transport and remembers the challenge, so the
   * requests after it already carry the right credentials.
   * @throws UNAUTHORIZED, NETWORK, REGISTRY_ERROR
   */
  ping(signal?: AbortSignal): Promise<void> {
    const learned = this.#learn();
    const p = (this.#pinged ??= (async () => {
      try {
        const res = await this.#raw('GET', this.url('/v2/'), {}, null, signal);
        await drain(res.body);
        if (res.status === 200) return;
        if (res.status === 401) {
          this.auth.learn(res.headers['www-authenticate']);
          return;
        }
        throw new RegistryError({ method: 'GET', url: res.url, status: res.status });
      } finally {
        learned?.resolve(undefined);
      }
    })());
    p.catch(() => {
      // let a later call ping again
      if (this.#pinged === p) this.#pinged = undefined;
    });
    return p;
  }

  /**
   * #learn opens the wait for the registry's first answer and hands it to
   * the caller, who settles it; undefined when it is open already.
   */
  #learn(): Deferred<undefined> | undefined {
    if (this.#learned !== undefined) return undefined;
    this.#learned = deferred<undefined>();
    return this.#learned;
  }

  /**
   * ready lets `req` go once this transport knows how the registry wants to
   * be authenticated, without a ping of its own where it can: the first
   * request that can be sent again goes at once and stands in for the ping
   * (a 401 teaches the challenge, which {@link send} answers), and the
   * requests made meanwhile wait for its answer, so that a bearer registry
   * issues one token per scope, not one per request. The first request
   * with a body that cannot be sent twice pings first. It answers the wait
   * to settle once `req` has its answer (or failed), if `req` holds it.
   * @throws what {@link ping} throws, for a request that pings
   */
  async ready(req: SendRequest): Promise<Deferred<undefined> | undefined> {
    if (this.#learned === undefined && replayable(req)) return this.#learn();
    await this.#heard(req.signal);
    return undefined;
  }

  /** #heard waits for the registry's first answer, pinging when nothing was sent yet. */
  async #heard(signal: AbortSignal | undefined): Promise<void> {
    if (this.#learned === undefined) await this.ping(signal);
    else await waitFor(this.#learned, signal);
  }

  /**
   * send performs one request (no retries): credentials for this registry's
   * origin only, one round of challenge handling (a new challenge upgrades
   * the token's scope), and redirects for GET/HEAD followed without
   * credentials.
   * @throws UNAUTHORIZED/DENIED when credentials are refused, NETWORK, ABORTED
   */
  async send(req: SendRequest, learned?: Deferred<undefined>): Promise<SendResponse> {
    try {
      return await this.#send(req, learned);
    } finally {
      learned?.resolve(undefined);
    }
  }

  async #send(req: SendRequest, learned: Deferred<undefined> | undefined): Promise<SendResponse> {
    let url = typeof req.url === 'string' ? this.url(req.url) : req.url;
    const scopes = [...(req.scopes ?? [])];
    const canReplay = replayable(req);
    let challenged = false;
    const origin = url.origin;
    for (let hop = 0; hop < MAX_HOPS; hop++) {
      const headers: Record<string, string> = { ...req.headers };
      const own = url.origin === this.base.origin;
      if (own) {
        const auth = await this.auth.authorization(scopes, req.signal);
        if (auth !== undefined) headers.authorization = auth;
      }
      const res = await this.#raw(req.method, url, headers, req.body, req.signal);
      if (res.status === 401 && own && !challenged && canReplay) {
        await drain(res.body);
        challenged = true;
        try {
          await this.auth.answer(res, req.method, scopes, req.signal);
        } finally {
          // The challenge is known (and a token for these scopes held):
          // the requests waiting on it go beside this one's second try.
          learned?.resolve(undefined);
        }
        continue;
      }
      if ((res.status === 401 || res.status === 403) && own) {
        throw await this.auth.refusal(res, req.method);
      }
      const location = header(res.headers, 'location');
      if (
        req.followRedirects === true &&
        location !== undefined &&
        REDIRECTS.has(res.status) &&
        (req.method === 'GET' || req.method === 'HEAD')
      ) {
        await drain(res.body);
        const next = new URL(location, url);
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          throw new RegistryError({
            method: req.method,
            url,
            code: ErrorCode.Registry,
            message: `${res.status} redirects to a ${next.protocol} URL`,
            temporary: false,
          });
        }
        url = next;
        continue;
      }
      return { ...res, url, redirected: url.origin !== origin || hop > 0 };
    }
    throw new RegistryError({
      method: req.method,
      url,
      code: ErrorCode.Registry,
      message: 'too many redirects',
      temporary: false,
    });
  }

  /**
   * lend GETs `path` of this registry (plain HTTP) over a connection of its
   * own and lends the body of a 200 to `take` chunk by chunk, in reused
   * memory (see {@link lentGet}), following redirects to plain-HTTP
   * locations (credentials only to the registry's own origin). It resolves
   * false, having taken nothing, when it cannot: an https registry or
   * location, a dispatcher given by the caller (its requests are the
   * caller's to shape), any other answer but a plain 200 (a challenge, an
   * error), or a failure before the body; the caller then sends the
   * request the usual way.
   * @throws ABORTED; once the body has begun, NETWORK or what `take` threw
   */
  async lend(
    path: string,
    scopes: readonly string[],
    signal: AbortSignal | undefined,
    take: Take,
  ): Promise<boolean> {
    if (!this.#ownSockets) return false;
    let authorization: string | undefined;
    try {
      await this.#heard(signal);
      authorization = await this.auth.authorization(scopes, signal);
    } catch {
      throwIfAborted(signal);
      return false;
    }
    let url = this.url(path);
    // Redirects (a registry's storage handing out the blob) are followed
    // as send() does: credentials for the registry's own origin only.
    for (let hop = 0; hop < MAX_HOPS; hop++) {
      const own = url.origin === this.base.origin;
      const got = await lentGet(
        {
          url,
          headers: {
            'user-agent': this.userAgent,
            ...(own && authorization !== undefined ? { authorization } : {}),
          },
          signal,
          timeout: this.#bodyTimeout,
        },
        take,
      );
      if (!(got instanceof URL)) return got;
      url = got;
    }
    return false;
  }

  /** ownSockets says requests may go over connections of lading's own (plain HTTP, no dispatcher given). */
  get ownSockets(): boolean {
    return this.#ownSockets;
  }

  /**
   * socketUpload opens a request with a body of `length` bytes on a
   * connection of its own, credentials only for this registry's origin (see
   * {@link socketUpload}); undefined when it cannot ({@link ownSockets}, or
   * `url` not plain HTTP). No challenge is answered and nothing is retried.
   * @throws ABORTED, UNAUTHORIZED (a token refused)
   */
  async socketUpload(
    method: string,
    url: URL,
    headers: Readonly<Record<string, string>>,
    length: number,
    scopes: readonly string[],
    signal: AbortSignal | undefined,
  ): Promise<SocketUpload | undefined> {
    if (!this.#ownSockets || url.protocol !== 'http:') return undefined;
    await this.#heard(signal);
    const authorization =
      url.origin === this.base.origin ? await this.auth.authorization(scopes, signal) : undefined;
    return socketUpload({
      method,
      url,
      headers: {
        'user-agent': this.userAgent,
        ...headers,
        ...(authorization === undefined ? {} : { authorization }),
      },
      length,
      signal,
      timeout: this.#headersTimeout,
    });
  }

  /**
   * exchange sends once the transport is {@link ready} and resolves the
   * response when `ok` accepts it; any other answer becomes its
   * RegistryError. The whole sequence is retried on temporary failures.
   */
  exchange(req: SendRequest, ok: (res: SendResponse) => boolean): Promise<SendResponse> {
    return this.withRetry(async () => {
      const res = await this.send(req, await this.ready(req));
      if (ok(res)) return res;
      throw await this.#refusal(req.method, res);
    }, req.signal);
  }

  /**
   * #refusal is the RegistryError of an answer `ok` did not accept. A 401 or
   * 403 from another origin (the storage a registry redirected to, which
   * never gets credentials) is REGISTRY_ERROR, not a refusal of the
   * caller's credentials: most often a signed URL that expired.
   */
  async #refusal(method: string, res: SendResponse): Promise<RegistryError> {
    const err = await errorFromResponse(method, res);
    if (res.url.origin === this.base.origin || (res.status !== 401 && res.status !== 403))
      return err;
    return new RegistryError({
      method,
      url: res.url,
      status: res.status,
      errors: err.errors,
      code: ErrorCode.Registry,
      message: `${res.status} from the storage the registry redirected to (a signed URL that expired or was refused)`,
    });
  }

  /**
   * exchangeWhole is {@link exchange} for an answer read whole (a listing's
   * page), capped at `max` bytes: a connection that drops before the body's
   * end is retried like one that drops before the headers.
   * @throws MANIFEST_TOO_LARGE past `max`; what exchange throws
   */
  exchangeWhole(
    req: SendRequest,
    ok: (res: SendResponse) => boolean,
    max: number,
  ): Promise<{ readonly res: SendResponse; readonly body: Buffer }> {
    return this.withRetry(async () => {
      const res = await this.send(req, await this.ready(req));
      if (!ok(res)) throw await this.#refusal(req.method, res);
      return {
        res,
        body: await readWhole(res.body, max, { method: req.method, url: res.url }, req.signal),
      };
    }, req.signal);
  }

  /** withRetry runs `fn` under this transport's {@link RetryPolicy}. */
  withRetry<T>(
    fn: (attempt: number) => Promise<T>,
    signal?: AbortSignal,
    onRetry?: OnRetry,
  ): Promise<T> {
    return withRetry(this.retry, fn, signal, onRetry);
  }
}

/** replayable says whether `req` can be sent again (its body is not a stream). */
function replayable(req: SendRequest): boolean {
  return !(req.body instanceof Readable);
}

/** waitFor waits for `d` to settle, or for `signal` to abort. @throws ABORTED */
async function waitFor(d: Deferred<undefined>, signal: AbortSignal | undefined): Promise<void> {
  if (d.settled) return;
  throwIfAborted(signal);
  if (signal === undefined) return d.promise;
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      reject(new AbortedError(signal.reason));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    void d.promise.finally(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}
