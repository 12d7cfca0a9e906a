import { ErrorCode } from '@lading/core';
import { resolveCredentials, type Credentials } from '../../credentials.js';
import { AuthError, RegistryError } from '../../errors.js';
import { parseChallenge, type Challenge } from '../challenge.js';
import type { RawSend } from './raw.js';
import { errorFromResponse, type SendResponse } from './response.js';
import { requestToken } from './token.js';

/** CredentialOptions say where a registry's credentials come from. */
export interface CredentialOptions {
  /** auth is used as given; otherwise stored credentials are looked up. */
  readonly auth?: Credentials | undefined;
  /** useStoredCredentials false skips docker/podman config files and helpers. */
  readonly useStoredCredentials?: boolean | undefined;
  /** env replaces process.env for the credential lookup. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
}

/**
 * Authenticator holds what one registry host taught us about
 * authentication: the credentials to use, the last challenge, and bearer
 * tokens by scope set (plus any refresh token the token endpoint issued).
 * It lives in a session, so its tokens are shared exactly as far as the
 * session is.
 */
export class Authenticator {
  readonly #registry: string;
  readonly #base: URL;
  readonly #options: CredentialOptions;
  readonly #send: RawSend;
  #credentials: Promise<Credentials | undefined> | undefined;
  #challenge: Challenge | undefined;
  readonly #tokens = new Map<string, { token: string; expires: number }>();
  #refreshToken: string | undefined;

  constructor(registry: string, base: URL, options: CredentialOptions, send: RawSend) {
    this.#registry = registry;
    this.#base = base;
    this.#options = options;
    this.#send = send;
  }

  /** credentials resolves (once) the credentials for this registry, if any. */
  credentials(): Promise<Credentials | undefined> {
    this.#credentials ??= (async () => {
      if (this.#options.auth !== undefined) return this.#options.auth;
      if (this.#options.useStoredCredentials === false) return undefined;
      const env = this.#options.env;
      return resolveCredentials(this.#registry, env === undefined ? {} : { env });
    })();
    return this.#credentials;
  }

  /** learn remembers the challenge a ping's 401 carried. */
  learn(header: string | string[] | undefined): void {
    this.#challenge = parseChallenge(header);
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
    if (ch.scheme === 'bearer') return `Bearer ${await this.#token(ch, scopes, false, signal)}`;
    return undefined;
  }

  async #token(
    challenge: Challenge,
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
    const issued = await requestToken(this.#send, {
      registry: this.#registry,
      base: this.#base,
      challenge,
      scopes: wanted,
      credentials: await this.credentials(),
      refreshToken: this.#refreshToken,
      signal,
    });
    if (issued.refreshToken !== undefined) this.#refreshToken = issued.refreshToken;
    const expires = now + Math.max(10, issued.expiresIn - 10) * 1000;
    this.#tokens.set(key, { token: issued.token, expires });
    return issued.token;
  }

  /**
   * answer handles a 401 on a first attempt: a new bearer challenge gets a
   * fresh token (its `scope` added to `scopes`, which the caller reuses); a
   * basic challenge without usable credentials, or one already answered,
   * fails.
   * @throws UNAUTHORIZED, REGISTRY_ERROR (401 without a challenge)
   */
  async answer(
    res: SendResponse,
    method: string,
    scopes: string[],
    signal?: AbortSignal,
  ): Promise<void> {
    const ch = parseChallenge(res.headers['www-authenticate']);
    if (ch === undefined) {
      throw new RegistryError({
        method,
        url: res.url,
        status: 401,
        message: '401 without a challenge',
      });
    }
    const creds = await this.credentials();
    const password = creds !== undefined && 'password' in creds;
    if (ch.scheme === 'basic' && (!password || this.#challenge?.scheme === 'basic')) {
      this.#challenge = ch;
      throw new AuthError(
        ErrorCode.Unauthorized,
        `${this.#registry}: ${password ? 'the registry refused the credentials' : 'credentials are required (basic auth)'}`,
      );
    }
    this.#challenge = ch;
    if (ch.scheme === 'bearer') {
      const extra = ch.params.scope;
      if (extra !== undefined)
        for (const s of extra.split(' ')) if (s !== '' && !scopes.includes(s)) scopes.push(s);
      await this.#token(ch, scopes, true, signal);
    }
  }

  /**
   * refusal turns a final 401 or 403 from the registry itself into an
   * AuthError: a refused scope with credentials is DENIED; without any, the
   * caller needs to log in, which is UNAUTHORIZED.
   */
  async refusal(res: SendResponse, method: string): Promise<AuthError> {
    const err = await errorFromResponse(method, res);
    let denied = res.status === 403;
    if (!denied) {
      const ch = parseChallenge(res.headers['www-authenticate']);
      denied =
        (await this.credentials()) !== undefined &&
        (ch?.params.error === 'insufficient_scope' || err.errors.some((e) => e.code === 'DENIED'));
    }
    return new AuthError(
      denied ? ErrorCode.Denied : ErrorCode.Unauthorized,
      `${this.#registry}: ${denied ? 'access denied' : 'unauthorized'} for ${method} ${err.url}`,
      err,
    );
  }
}
