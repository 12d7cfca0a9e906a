import { ErrorCode, isLadingError, readCapped } from '@lading/core';
import type { Credentials } from '../../credentials.js';
import { AuthError } from '../../errors.js';
import type { Challenge } from '../challenge.js';
import type { RawSend } from './raw.js';
import { ERROR_BODY_CAP, errorFromResponse, type SendResponse } from './response.js';

/** TokenRequest is one exchange with a bearer challenge's token endpoint. */
export interface TokenRequest {
  /** registry names the host in messages. */
  readonly registry: string;
  /** base is the registry's origin (an https registry never sends secrets to an http realm). */
  readonly base: URL;
  readonly challenge: Challenge;
  /** scopes, sorted and without duplicates. */
  readonly scopes: readonly string[];
  readonly credentials: Credentials | undefined;
  /** refreshToken is one the endpoint issued earlier; it wins over the configured identity token. */
  readonly refreshToken: string | undefined;
  readonly signal: AbortSignal | undefined;
}

/** IssuedToken is what a token endpoint answered. */
export interface IssuedToken {
  readonly token: string;
  /** expiresIn in seconds (60 when the endpoint did not say). */
  readonly expiresIn: number;
  readonly refreshToken: string | undefined;
}

function refuse(registry: string, why: string, cause?: unknown): AuthError {
  return new AuthError(ErrorCode.Unauthorized, `${registry}: ${why}`, cause);
}

function realmOf(req: TokenRequest): URL {
  const realm = req.challenge.params.realm;
  if (realm === undefined || realm === '')
    throw refuse(req.registry, 'bearer challenge without a realm');
  let url: URL;
  try {
    url = new URL(realm);
  } catch (err) {
    throw refuse(req.registry, "the bearer challenge's realm is not a URL", err);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw refuse(req.registry, "the bearer challenge's realm is not an http(s) URL");
  }
  return url;
}

function basic(creds: Credentials | undefined): string | undefined {
  if (creds === undefined || !('password' in creds)) return undefined;
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
}

/** ask sends the token request: an OAuth2 refresh-token POST or a docker token GET. */
async function ask(send: RawSend, req: TokenRequest, realm: URL): Promise<SendResponse> {
  const { credentials: creds, challenge, scopes, signal } = req;
  const service = challenge.params.service;
  const identity =
    req.refreshToken ??
    (creds !== undefined && 'identityToken' in creds ? creds.identityToken : undefined);
  const secret = identity !== undefined || basic(creds) !== undefined;
  // An https registry may not send credentials to a plain-http token
  // endpoint: anyone on the path would read them.
  if (secret && req.base.protocol === 'https:' && realm.protocol === 'http:') {
    throw refuse(
      req.registry,
      `refusing to send credentials to the plain-http token realm ${realm.origin} of an https registry`,
    );
  }
  if (identity !== undefined) {
    // OAuth2 refresh-token grant (docker's identity tokens).
    const form = new URLSearchParams();
    form.set('grant_type', 'refresh_token');
    form.set('refresh_token', identity);
    form.set('client_id', 'lading');
    if (service !== undefined) form.set('service', service);
    if (scopes.length > 0) form.set('scope', scopes.join(' '));
    const headers = { 'content-type': 'application/x-www-form-urlencoded' };
    return send('POST', realm, headers, form.toString(), signal);
  }
  if (service !== undefined) realm.searchParams.set('service', service);
  for (const s of scopes) realm.searchParams.append('scope', s);
  const headers: Record<string, string> = {};
  // The token realm may live on another host: by design of the protocol it
  // receives the basic credentials (and only for this token request).
  const authorization = basic(creds);
  if (authorization !== undefined) headers.authorization = authorization;
  return send('GET', realm, headers, null, signal);
}

/**
 * requestToken asks a bearer challenge's realm for a token covering
 * `scopes` (distribution's token authentication, docker's OAuth2 variant).
 * @throws UNAUTHORIZED (bad realm, refused, malformed answer), DENIED (403)
 */
export async function requestToken(send: RawSend, req: TokenRequest): Promise<IssuedToken> {
  const res = await ask(send, req, realmOf(req));
  if (res.status !== 200) {
    const err = await errorFromResponse('GET', res);
    const what = req.scopes.length === 0 ? 'the registry' : req.scopes.join(' ');
    throw new AuthError(
      res.status === 403 ? ErrorCode.Denied : ErrorCode.Unauthorized,
      `${req.registry}: the token endpoint refused to issue a token for ${what} (HTTP ${res.status})`,
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
  } catch {
    // (no cause: the parser's message quotes the body, which may be a bare token)
    throw refuse(req.registry, 'the token endpoint answered invalid JSON');
  }
  const token =
    typeof parsed.token === 'string' && parsed.token !== ''
      ? parsed.token
      : typeof parsed.access_token === 'string' && parsed.access_token !== ''
        ? parsed.access_token
        : undefined;
  if (token === undefined) throw refuse(req.registry, 'the token endpoint answered no token');
  // It goes into an Authorization header: visible ASCII only (RFC 6750's
  // token68 and the JWTs registries issue are).
  if (!/^[\x21-\x7e]+$/.test(token))
    throw refuse(
      req.registry,
      'the token endpoint answered a token that cannot be sent in a header',
    );
  return {
    token,
    expiresIn: typeof parsed.expires_in === 'number' ? parsed.expires_in : 60,
    refreshToken:
      typeof parsed.refresh_token === 'string' && parsed.refresh_token !== ''
        ? parsed.refresh_token
        : undefined,
  };
}
