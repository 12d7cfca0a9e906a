import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { AbortedError, ErrorCode, isLadingError, readCapped, throwIfAborted } from '@lading/core';
import type { Credentials } from '../credentials.js';
import { resolveCredentials } from '../credentials.js';
import { AuthError, RegistryError, UploadError, type RegistryErrorDetail } from '../errors.js';
import { parseChallenge, parseRetryAfter, type Challenge } from './challenge.js';

/** Max bytes read from an error body. */
export const ERROR_BODY_CAP = 64 * 1024;

export type Headers = Record<string, string | string[] | undefined>;

/**
 * RetryOptions tune the retries of temporary failures (408, 429, 5xx, dropped
 * connections): exponential backoff with jitter, honouring `Retry-After`.
 */
export type RetryOptions = {
  /** retries is how many times a request sequence is retried (default 3). */
  readonly retries?: number;
  /** minDelayMs is the first backoff (default 200). */
  readonly minDelayMs?: number;
  /** maxDelayMs caps each backoff (default 10 000). */
  readonly maxDelayMs?: number;
};

export interface TransportOptions {
  readonly auth?: Credentials | undefined;
  readonly insecure?: boolean | undefined;
  /**
   * headersTimeout (ms) bounds the wait for response headers, refreshed while
   * a request body flows: a stream layer whose producer stalls longer fails
   * its PATCH. Default 300 000; 0 disables.
   */
  readonly headersTimeout?: number | undefined;
  /** bodyTimeout (ms) bounds the gap between response body chunks. Default 300 000; 0 disables. */
  readonly bodyTimeout?: number | undefined;
  /** scheme forces `http` or `https` (default: http for loopback hosts or `insecure`, else https). */
  readonly scheme?: 'http' | 'https' | undefined;
  readonly ca?: string | Buffer | readonly (string | Buffer)[] | undefined;
  readonly userAgent?: string | undefined;
  readonly dispatcher?: Dispatcher | undefined;
  readonly connections?: number | undefined;
  readonly retry?: RetryOptions | false | undefined;
  readonly useStoredCredentials?: boolean | undefined;
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
}

export interface SendRequest {
  readonly method: string;
  /** url is absolute, or a path resolved against the registry base. */
  readonly url: string | URL;
  readonly headers?: Record<string, string>;
  readonly body?: string | Buffer | Uint8Array | Readable | null;
  /** scopes the request needs (`repository:name:pull,push`). */
  readonly scopes?: readonly string[];
  readonly signal?: AbortSignal | undefined;
  /** followRedirects for GET/HEAD (3xx); never sends credentials to another origin. */
  readonly followRedirects?: boolean;
}

export interface SendResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Dispatcher.ResponseData['body'];
  /** url is the final URL (after redirects). */
  readonly url: URL;
  /** redirected says the final URL differs from the requested one. */
  readonly redirected: boolean;
}

let defaultAgent: Agent | undefined;

function isLocalHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || h.startsWith('127.');
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

const temporaryCodes = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/** isNetworkError tells a dropped or refused connection (worth a retry) from e.g. a TLS failure. */
function isNetworkError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && temporaryCodes.has(code);
}

/**
 * Transport talks to one registry host: it picks the scheme, attaches
 * credentials only for that host's origin, answers auth challenges, and
 * follows redirects without credentials.
 */
export class Transport {
  readonly registry: string;
  readonly base: URL;
  readonly dispatcher: Dispatcher;
  readonly userAgent: string;
  readonly retry: Required<RetryOptions>;
  readonly #options: TransportOptions;
  #credentials: Promise<Credentials | undefined> | undefined;
  #challenge: Challenge | undefined;
  #pinged: Promise<void> | undefined;
  readonly #tokens = new Map<string, { token: string; expires: number }>();
  #refreshToken: string | undefined;

  constructor(registry: string, options: TransportOptions = {}) {
    this.registry = registry;
    const host = registry === 'docker.io' ? 'registry-1.docker.io' : registry;
    const probe = new URL(`http://${host}`);
    const scheme =
      options.scheme ??
      (options.insecure === true || isLocalHost(probe.hostname) ? 'http' : 'https');
    this.base = new URL(`${scheme}://${host}`);
    this.#options = options;
    this.userAgent = options.userAgent ?? 'lading/0.1';
    if (options.dispatcher !== undefined) this.dispatcher = options.dispatcher;
    else if (options.ca !== undefined || options.connections !== undefined) {
      const ca = options.ca;
      this.dispatcher = new Agent({
        connections: options.connections ?? 16,
        ...(ca === undefined
          ? {}
          : {
              connect: {
                ca: Array.isArray(ca) ? [...(ca as (string | Buffer)[])] : (ca as string | Buffer),
              },
            }),
      });
    } else {
      defaultAgent ??= new Agent({ connections: 16 });
      this.dispatcher = defaultAgent;
    }
    const r = options.retry;
    this.retry =
      r === false
        ? { retries: 0, minDelayMs: 0, maxDelayMs: 0 }
        : {
            retries: r?.retries ?? 3,
            minDelayMs: r?.minDelayMs ?? 200,
            maxDelayMs: r?.maxDelayMs ?? 10_000,
          };
  }

  /** url resolves a registry path. */
  url(path: string): URL {
    return new URL(path, this.base);
  }

  credentials(): Promise<Credentials | undefined> {
    this.#credentials ??= (async () => {
      if (this.#options.auth !== undefined) return this.#options.auth;
      if (this.#options.useStoredCredentials === false) return undefined;
      return resolveCredentials(
        this.registry,
        this.#options.env === undefined ? {} : { env: this.#options.env },
      );
    })();
    return this.#credentials;
  }

  /**
   * ping GETs `/v2/` once per transport and remembers the challenge, so the
   * first real request already carries the right credentials.
   * @throws UNAUTHORIZED, NETWORK, REGISTRY_ERROR
   */
  ping(signal?: AbortSignal): Promise<void> {
    const p = (this.#pinged ??= (async () => {
      const res = await this.#raw('GET', this.url('/v2/'), {}, null, signal);
      await drain(res.body);
      if (res.status === 200) return;
      if (res.status === 401) {
        this.#challenge = parseChallenge(res.headers['www-authenticate']);
        return;
      }
      throw new RegistryError({ method: 'GET', url: res.url, status: res.status });
    })());
    p.catch(() => {
      // let a later call ping again
      if (this.#pinged === p) this.#pinged = undefined;
    });
    return p;
  }

  async #raw(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body: SendRequest['body'],
    signal: AbortSignal | undefined,
  ): Promise<SendResponse> {
    throwIfAborted(signal);
    try {
      const res = await request(url, {
        method,
        headers: { 'user-agent': this.userAgent, ...headers },
        body: body ?? null,
        dispatcher: this.dispatcher,
        signal: signal ?? null,
        ...(this.#options.headersTimeout === undefined
          ? {}
          : { headersTimeout: this.#options.headersTimeout }),
        ...(this.#options.bodyTimeout === undefined
          ? {}
          : { bodyTimeout: this.#options.bodyTimeout }),
      });
      return {
        status: res.statusCode,
        headers: res.headers,
        body: res.body,
        url,
        redirected: false,
      };
    } catch (err) {
      if (signal?.aborted === true) throw new AbortedError(signal.reason);
      if (isLadingError(err)) throw err;
      throw new RegistryError({
        method,
        url,
        cause: err,
        temporary: isNetworkError(err),
        message: `request failed: ${err instanceof Error ? err.message : String(err)}`,
      });
    }
  }

  /** authorization returns the header to send to this registry for `scopes`. */
  async authorization(
    scopes: readonly string[],
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const creds = await this.credentials();
    if (creds !== undefined && 'registryToken' in creds) return `Bearer ${creds.registryToken}`;
    const ch = this.#challenge;
    if (ch === undefined) return undefined;
    if (ch.scheme === 'basic') {
      if (creds !== undefined && 'password' in creds) {
        return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
      }
      return undefined;
    }
    if (ch.scheme === 'bearer') {
      const token = await this.#token(ch, scopes, false, signal);
      return `Bearer ${token}`;
    }
    return undefined;
  }

  async #token(
    ch: Challenge,
    scopes: readonly string[],
    force: boolean,
    signal?: AbortSignal,
  ): Promise<string> {
    const wanted = [...new Set(scopes)].sort();
    const key = wanted.join(' ');
    const now = Date.now();
    if (!force) {
      const hit = this.#tokens.get(key);
      if (hit !== undefined && hit.expires > now) return hit.token;
    }
    const realm = ch.params.realm;
    if (realm === undefined || realm === '') {
      throw new AuthError(
        ErrorCode.Unauthorized,
        `${this.registry}: bearer challenge without a realm`,
      );
    }
    const creds = await this.credentials();
    const service = ch.params.service;
    let realmUrl: URL;
    try {
      realmUrl = new URL(realm);
    } catch (err) {
      throw new AuthError(
        ErrorCode.Unauthorized,
        `${this.registry}: the bearer challenge's realm is not a URL`,
        err,
      );
    }
    if (realmUrl.protocol !== 'https:' && realmUrl.protocol !== 'http:') {
      throw new AuthError(
        ErrorCode.Unauthorized,
        `${this.registry}: the bearer challenge's realm is not an http(s) URL`,
      );
    }
    let res: SendResponse;
    const identity =
      this.#refreshToken ??
      (creds !== undefined && 'identityToken' in creds ? creds.identityToken : undefined);
    const secret = identity !== undefined || (creds !== undefined && 'password' in creds);
    // An https registry may not send credentials to a plain-http token
    // endpoint: anyone on the path would read them.
    if (secret && this.base.protocol === 'https:' && realmUrl.protocol === 'http:') {
      throw new AuthError(
        ErrorCode.Unauthorized,
        `${this.registry}: refusing to send credentials to the plain-http token realm ${realmUrl.origin} of an https registry`,
      );
    }
    if (identity !== undefined) {
      // OAuth2 refresh-token grant (docker's identity tokens).
      const form = new URLSearchParams();
      form.set('grant_type', 'refresh_token');
      form.set('refresh_token', identity);
      form.set('client_id', 'lading');
      if (service !== undefined) form.set('service', service);
      if (wanted.length > 0) form.set('scope', wanted.join(' '));
      res = await this.#raw(
        'POST',
        realmUrl,
        { 'content-type': 'application/x-www-form-urlencoded' },
        form.toString(),
        signal,
      );
    } else {
      if (service !== undefined) realmUrl.searchParams.set('service', service);
      for (const s of wanted) realmUrl.searchParams.append('scope', s);
      const headers: Record<string, string> = {};
      // The token realm may live on another host: by design of the protocol it
      // receives the basic credentials (and only for this token request).
      if (creds !== undefined && 'password' in creds) {
        headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
      }
      res = await this.#raw('GET', realmUrl, headers, null, signal);
    }
    if (res.status !== 200) {
      const err = await errorFromResponse('GET', res);
      throw new AuthError(
        res.status === 403 ? ErrorCode.Denied : ErrorCode.Unauthorized,
        `${this.registry}: the token endpoint refused to issue a token for ${key === '' ? 'the registry' : key} (HTTP ${res.status})`,
        err,
      );
    }
    // A body past the cap reads as no body: the JSON check below refuses it.
    const body = await readCapped(res.body, ERROR_BODY_CAP).catch((err: unknown) => {
      if (isLadingError(err, ErrorCode.ManifestTooLarge)) return undefined;
      throw err;
    });
    let parsed: {
      token?: unknown;
      access_token?: unknown;
      expires_in?: unknown;
      refresh_token?: unknown;
    };
    try {
      parsed = JSON.parse(body?.toString('utf8') ?? '') as typeof parsed;
    } catch (err) {
      throw new AuthError(
        ErrorCode.Unauthorized,
        `${this.registry}: the token endpoint answered invalid JSON`,
        err,
      );
    }
    const token =
      typeof parsed.token === 'string' && parsed.token !== ''
        ? parsed.token
        : typeof parsed.access_token === 'string'
          ? parsed.access_token
          : undefined;
    if (token === undefined) {
      throw new AuthError(
        ErrorCode.Unauthorized,
        `${this.registry}: the token endpoint answered no token`,
      );
    }
    if (typeof parsed.refresh_token === 'string' && parsed.refresh_token !== '') {
      this.#refreshToken = parsed.refresh_token;
    }
    const expiresIn = typeof parsed.expires_in === 'number' ? parsed.expires_in : 60;
    this.#tokens.set(key, { token, expires: now + Math.max(10, expiresIn - 10) * 1000 });
    return token;
  }

  /**
   * send performs one request (no retries): credentials for this registry's
   * origin only, one round of challenge handling (a new challenge upgrades
   * the token's scope), and redirects for GET/HEAD followed without
   * credentials.
   * @throws UNAUTHORIZED/DENIED when credentials are refused, NETWORK, ABORTED
   */
  async send(req: SendRequest): Promise<SendResponse> {
    let url = typeof req.url === 'string' ? this.url(req.url) : req.url;
    const scopes = [...(req.scopes ?? [])];
    const replayable = !(req.body instanceof Readable);
    let challenged = false;
    const origin = url.origin;
    for (let hop = 0; hop < 10; hop++) {
      const headers: Record<string, string> = { ...req.headers };
      const own = url.origin === this.base.origin;
      if (own) {
        const auth = await this.authorization(scopes, req.signal);
        if (auth !== undefined) headers.authorization = auth;
      }
      const res = await this.#raw(req.method, url, headers, req.body, req.signal);
      if (res.status === 401 && own && !challenged && replayable) {
        const ch = parseChallenge(res.headers['www-authenticate']);
        await drain(res.body);
        challenged = true;
        if (ch === undefined) {
          throw new RegistryError({
            method: req.method,
            url,
            status: 401,
            message: '401 without a challenge',
          });
        }
        const creds = await this.credentials();
        if (
          ch.scheme === 'basic' &&
          (creds === undefined || !('password' in creds) || this.#challenge?.scheme === 'basic')
        ) {
          this.#challenge = ch;
          if (creds === undefined || !('password' in creds)) {
            throw new AuthError(
              ErrorCode.Unauthorized,
              `${this.registry}: credentials are required (basic auth)`,
            );
          }
          throw new AuthError(
            ErrorCode.Unauthorized,
            `${this.registry}: the registry refused the credentials`,
          );
        }
        this.#challenge = ch;
        if (ch.scheme === 'bearer') {
          const extra = ch.params.scope;
          if (extra !== undefined)
            for (const s of extra.split(' ')) if (s !== '' && !scopes.includes(s)) scopes.push(s);
          await this.#token(ch, scopes, true, req.signal);
        }
        continue;
      }
      if (res.status === 401 && own) {
        const ch = parseChallenge(res.headers['www-authenticate']);
        const err = await errorFromResponse(req.method, res);
        // Refused scope with credentials is DENIED; without any, the caller
        // needs to log in, which is UNAUTHORIZED.
        const denied =
          (await this.credentials()) !== undefined &&
          (ch?.params.error === 'insufficient_scope' ||
            err.errors.some((e) => e.code === 'DENIED'));
        throw new AuthError(
          denied ? ErrorCode.Denied : ErrorCode.Unauthorized,
          `${this.registry}: ${denied ? 'access denied' : 'unauthorized'} for ${req.method} ${err.url}`,
          err,
        );
      }
      if (res.status === 403 && own) {
        const err = await errorFromResponse(req.method, res);
        throw new AuthError(
          ErrorCode.Denied,
          `${this.registry}: access denied for ${req.method} ${err.url}`,
          err,
        );
      }
      const location = header(res.headers, 'location');
      if (
        req.followRedirects === true &&
        location !== undefined &&
        [301, 302, 303, 307, 308].includes(res.status) &&
        (req.method === 'GET' || req.method === 'HEAD')
      ) {
        await drain(res.body);
        url = new URL(location, url);
        continue;
      }
      return { ...res, url, redirected: url.origin !== origin || hop > 0 };
    }
    throw new RegistryError({
      method: req.method,
      url,
      message: 'too many redirects',
      temporary: false,
    });
  }

  /**
   * withRetry runs a whole request sequence again on temporary failures
   * (408/429/5xx, connection resets) with exponential backoff and jitter,
   * honouring Retry-After. The sequence's own requests are never retried
   * inside it.
   */
  async withRetry<T>(
    fn: (attempt: number) => Promise<T>,
    signal?: AbortSignal,
    onRetry?: (attempt: number, delayMs: number, err: unknown) => void,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (err) {
        if (attempt >= this.retry.retries || !isTemporary(err) || signal?.aborted === true)
          throw err;
        const backoff = Math.min(this.retry.maxDelayMs, this.retry.minDelayMs * 2 ** attempt);
        const jittered = backoff / 2 + Math.random() * (backoff / 2);
        const after = err instanceof RegistryError ? err.retryAfterMs : undefined;
        const delay = Math.min(this.retry.maxDelayMs * 6, Math.max(jittered, after ?? 0));
        onRetry?.(attempt + 1, delay, err);
        try {
          await sleep(delay, undefined, { signal });
        } catch {
          throw new AbortedError(signal?.reason);
        }
      }
    }
  }
}

/** isTemporary tells whether an error is worth retrying. */
export function isTemporary(err: unknown): boolean {
  return (
    (err instanceof RegistryError && err.temporary) ||
    (err instanceof UploadError && err.restartable)
  );
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
  let errors: RegistryErrorDetail[] = [];
  try {
    // Past the cap readCapped throws, and the catch below leaves errors empty.
    const body = await readCapped(res.body, ERROR_BODY_CAP);
    if (body.length > 0) {
      const parsed = JSON.parse(body.toString('utf8')) as { errors?: unknown };
      if (Array.isArray(parsed.errors)) {
        errors = parsed.errors
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
    }
  } catch {
    // not JSON, or cut off: the status says enough
  }
  return new RegistryError({
    method,
    url: res.url,
    status: res.status,
    errors,
    retryAfterMs: parseRetryAfter(res.headers['retry-after']),
    ...(message === undefined ? {} : { message }),
  });
}
