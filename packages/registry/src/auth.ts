import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode, LadingError } from '@lading/core';
import { HttpError, SpecErrorCode } from './errors.js';
import { signToken, verifyToken, type TokenClaims } from './internal/jwt.js';
import { htpasswdText, parseHtpasswd, PasswordChecker } from './internal/password.js';
import type { WindowLimit } from './limits.js';

export { parseHtpasswd };

/** Action is a permission on a repository. */
export type Action = 'pull' | 'push' | 'delete';

/**
 * GrantFunction answers which actions `user` (undefined: anonymous) may take
 * on `repository`. The default grants authenticated users everything; see
 * {@link parseGrants} for a file format.
 */
export type GrantFunction = (user: string | undefined, repository: string) => readonly Action[];

/** NoAuth serves everyone. */
export interface NoAuth {
  readonly type: 'none';
}

/** BasicAuth checks HTTP Basic credentials against an htpasswd (bcrypt) file. */
export interface BasicAuth {
  readonly type: 'basic';
  /**
   * htpasswd is the file's contents (`user:$2y$…` lines), or a path to the
   * file when it contains no `:` (every htpasswd line does).
   */
  readonly htpasswd?: string | undefined;
  /** htpasswdFile is a path to read instead of `htpasswd`. */
  readonly htpasswdFile?: string | undefined;
  readonly realm?: string | undefined;
  readonly grants?: GrantFunction | undefined;
}

/**
 * TokenAuth serves Bearer tokens from a built-in `/token` endpoint (Docker
 * token GET and OAuth2 POST), signed with HMAC-SHA256 (JWT HS256 shape).
 */
export interface TokenAuth {
  readonly type: 'token';
  /** users is an htpasswd (bcrypt) file's contents, or its path when it contains no `:`; or use `usersFile`. */
  readonly users?: string | undefined;
  readonly usersFile?: string | undefined;
  /** issuer is the `iss` claim (default "lading-registry"). */
  readonly issuer?: string | undefined;
  /** service is the `service` challenge parameter and `aud` claim (default "lading-registry"). */
  readonly service?: string | undefined;
  /**
   * realm is the token endpoint's absolute URL. The default is
   * `<scheme>://<Host>/token` of each request, where the scheme is https
   * when the connection is TLS or the request says it came over https
   * (`X-Forwarded-Proto: https` or `Forwarded: proto=https`, honoured
   * because it can only upgrade), else http. Behind a TLS proxy that sets
   * neither, configure it.
   */
  readonly realm?: string | undefined;
  /** anonymousPull lets anyone obtain pull tokens without credentials. */
  readonly anonymousPull?: boolean | undefined;
  readonly grants?: GrantFunction | undefined;
  /** secret signs tokens (default: 32 random bytes, so tokens die with the process). */
  readonly secret?: string | Uint8Array | undefined;
  /** expiresIn is the access token lifetime in seconds (default 300). */
  readonly expiresIn?: number | undefined;
}

/** RegistryAuth selects how the registry authenticates. */
export type RegistryAuth = NoAuth | BasicAuth | TokenAuth;

/** AuthenticatorOptions tune an {@link Authenticator} beyond its {@link RegistryAuth}. */
export interface AuthenticatorOptions {
  /**
   * failureLimit answers 429 TOOMANYREQUESTS (with `Retry-After`) to
   * password checks from a client address, or for a user name, that failed
   * `count` times within `perSeconds` (default 10 per 60 s; false: none).
   * Credentials already verified are still accepted.
   */
  readonly failureLimit?: WindowLimit | false | undefined;
}

/** AccessNeed is what a request needs. */
export type AccessNeed =
  | { readonly kind: 'ping' }
  | { readonly kind: 'catalog' }
  | { readonly kind: 'repository'; readonly name: string; readonly actions: readonly Action[] };

const allActions: readonly Action[] = ['pull', 'push', 'delete'];
const defaultGrants: GrantFunction = (user) => (user === undefined ? [] : allActions);

function parseBasic(header: string | undefined): { user: string; password: string } | undefined {
  if (header?.toLowerCase().startsWith('basic ') !== true) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function scopeString(need: AccessNeed): string | undefined {
  if (need.kind === 'catalog') return 'registry:catalog:*';
  if (need.kind === 'repository') return `repository:${need.name}:${need.actions.join(',')}`;
  return undefined;
}

function quote(v: string): string {
  return `"${v.replace(/["\\]/g, '')}"`;
}

function forwardedHttps(req: IncomingMessage): boolean {
  const xfp = req.headers['x-forwarded-proto'];
  const first = (Array.isArray(xfp) ? xfp[0] : xfp)?.split(',')[0]?.trim().toLowerCase();
  if (first === 'https') return true;
  return /(?:^|[;,\s])proto="?https"?(?:$|[;,\s])/i.test(req.headers.forwarded ?? '');
}

function checkRealm(realm: string | undefined): void {
  if (realm === undefined) return;
  let u: URL | undefined;
  try {
    u = new URL(realm);
  } catch {
    u = undefined;
  }
  if (u === undefined || (u.protocol !== 'https:' && u.protocol !== 'http:')) {
    throw new LadingError(ErrorCode.InvalidArgument, 'token realm must be an absolute http(s) URL');
  }
}

/**
 * Authenticator enforces a {@link RegistryAuth} on registry requests and
 * serves the token endpoint.
 */
export class Authenticator {
  readonly #auth: RegistryAuth;
  readonly #passwords: PasswordChecker;
  readonly #secret: Buffer;
  readonly #grants: GrantFunction;

  /** @throws LadingError INVALID_ARGUMENT for a realm that is not an absolute http(s) URL */
  constructor(auth: RegistryAuth, options: AuthenticatorOptions = {}) {
    this.#auth = auth;
    if (auth.type === 'token') checkRealm(auth.realm);
    let text = '';
    if (auth.type === 'basic') text = htpasswdText(auth.htpasswd, auth.htpasswdFile);
    if (auth.type === 'token') text = htpasswdText(auth.users, auth.usersFile);
    this.#passwords = new PasswordChecker(parseHtpasswd(text), options.failureLimit);
    const secret = auth.type === 'token' ? auth.secret : undefined;
    this.#secret =
      secret === undefined
        ? randomBytes(32)
        : typeof secret === 'string'
          ? Buffer.from(secret)
          : Buffer.from(secret);
    this.#grants = auth.type === 'none' ? defaultGrants : (auth.grants ?? defaultGrants);
  }

  /** close stops the password workers. */
  async close(): Promise<void> {
    await this.#passwords.close();
  }

  /** enabled tells whether requests need credentials at all. */
  get enabled(): boolean {
    return this.#auth.type !== 'none';
  }

  /** tokenEndpoint tells whether `/token` is served. */
  get tokenEndpoint(): boolean {
    return this.#auth.type === 'token';
  }

  /** allowed answers the actions `user` (undefined: anonymous) may take on `repository`. */
  allowed(user: string | undefined, repository: string): readonly Action[] {
    if (this.#auth.type === 'none') return allActions;
    return this.#allowed(user, repository);
  }

  #allowed(user: string | undefined, repository: string): readonly Action[] {
    if (user === undefined) {
      const anon = this.#auth.type === 'token' && this.#auth.anonymousPull === true;
      const granted =
        this.#auth.type === 'none' ? [] : (this.#auth.grants?.(undefined, repository) ?? []);
      return anon ? [...new Set<Action>(['pull', ...granted])] : granted;
    }
    return this.#grants(user, repository);
  }

  #service(): string {
    return this.#auth.type === 'token' ? (this.#auth.service ?? 'lading-registry') : '';
  }

  #issuer(): string {
    return this.#auth.type === 'token' ? (this.#auth.issuer ?? 'lading-registry') : '';
  }

  #realm(req: IncomingMessage): string {
    if (this.#auth.type === 'token') {
      if (this.#auth.realm !== undefined) return this.#auth.realm;
      const tls = (req.socket as { encrypted?: boolean }).encrypted === true;
      const scheme = tls || forwardedHttps(req) ? 'https' : 'http';
      return `${scheme}://${req.headers.host ?? '127.0.0.1'}/token`;
    }
    if (this.#auth.type === 'basic') return this.#auth.realm ?? 'lading registry';
    return '';
  }

  #challenge(req: IncomingMessage, need: AccessNeed, error?: string): Record<string, string> {
    if (this.#auth.type === 'basic') {
      return { 'WWW-Authenticate': `Basic realm=${quote(this.#realm(req))},charset="UTF-8"` };
    }
    let value = `Bearer realm=${quote(this.#realm(req))},service=${quote(this.#service())}`;
    const scope = scopeString(need);
    if (scope !== undefined) value += `,scope=${quote(scope)}`;
    if (error !== undefined) value += `,error=${quote(error)}`;
    return { 'WWW-Authenticate': value };
  }

  /**
   * authorize checks that `req` may do `need`, and resolves with the
   * authenticated user (undefined: anonymous, or no auth).
   * @throws HttpError 401 UNAUTHORIZED (with a challenge), 403 DENIED, or 429 TOOMANYREQUESTS past the failed-login limit
   */
  async authorize(req: IncomingMessage, need: AccessNeed): Promise<string | undefined> {
    if (this.#auth.type === 'none') return undefined;
    const header = req.headers.authorization;
    if (this.#auth.type === 'basic') {
      const creds = parseBasic(header);
      if (creds === undefined || !(await this.#passwords.check(req, creds.user, creds.password))) {
        throw new HttpError(401, SpecErrorCode.Unauthorized, undefined, undefined, {
          ...this.#challenge(req, need),
        });
      }
      if (need.kind === 'repository') {
        const allowed = this.#grants(creds.user, need.name);
        const missing = need.actions.filter((a) => !allowed.includes(a));
        if (missing.length > 0) {
          throw new HttpError(403, SpecErrorCode.Denied, undefined, {
            repository: need.name,
            missing,
          });
        }
      }
      return creds.user;
    }
    // token
    const token =
      header?.toLowerCase().startsWith('bearer ') === true ? header.slice(7).trim() : '';
    if (token === '') {
      throw new HttpError(401, SpecErrorCode.Unauthorized, undefined, undefined, {
        ...this.#challenge(req, need),
      });
    }
    const claims = this.#verify(token);
    if (claims === undefined || claims.typ === 'refresh') {
      throw new HttpError(401, SpecErrorCode.Unauthorized, 'invalid or expired token', undefined, {
        ...this.#challenge(req, need, 'invalid_token'),
      });
    }
    if (need.kind === 'ping') return claims.sub;
    const type = need.kind === 'catalog' ? 'registry' : 'repository';
    const name = need.kind === 'catalog' ? 'catalog' : need.name;
    const held = new Set(
      (claims.access ?? [])
        .filter((a) => a.type === type && a.name === name)
        .flatMap((a) => a.actions),
    );
    const wanted = need.kind === 'catalog' ? ['*'] : need.actions;
    const missing = wanted.filter((a) => !held.has(a));
    if (missing.length === 0) return claims.sub;
    // A user who could never get the scope is denied; one whose token merely
    // lacks it (or an anonymous one) is told to fetch a better token.
    if (claims.sub !== undefined && need.kind === 'repository') {
      const allowed = this.#allowed(claims.sub, need.name);
      if (need.actions.some((a) => !allowed.includes(a))) {
        throw new HttpError(403, SpecErrorCode.Denied, undefined, { repository: name, missing });
      }
    }
    throw new HttpError(401, SpecErrorCode.Unauthorized, 'insufficient scope', undefined, {
      ...this.#challenge(req, need, 'insufficient_scope'),
    });
  }

  #sign(claims: TokenClaims): string {
    return signToken(this.#secret, claims);
  }

  #verify(token: string): TokenClaims | undefined {
    return verifyToken(this.#secret, token, this.#issuer(), this.#service());
  }

  #grantScopes(user: string | undefined, scopes: readonly string[]): TokenClaims['access'] {
    const access: NonNullable<TokenClaims['access']> = [];
    for (const scope of scopes) {
      const first = scope.indexOf(':');
      const last = scope.lastIndexOf(':');
      if (first < 0 || last === first) continue;
      const type = scope.slice(0, first);
      const name = scope.slice(first + 1, last);
      const requested = scope.slice(last + 1).split(',');
      if (type === 'registry' && name === 'catalog') {
        if (user !== undefined && requested.includes('*'))
          access.push({ type, name, actions: ['*'] });
        continue;
      }
      if (type !== 'repository') continue;
      const allowed = this.#allowed(user, name);
      const wanted = requested.includes('*') ? allActions : requested;
      const actions = wanted.filter((a): a is Action => allowed.includes(a as Action));
      access.push({ type, name, actions });
    }
    return access;
  }

  #issue(user: string | undefined, scopes: readonly string[]) {
    const now = Math.floor(Date.now() / 1000);
    const expiresIn = this.#auth.type === 'token' ? (this.#auth.expiresIn ?? 300) : 300;
    const access = this.#grantScopes(user, scopes);
    const token = this.#sign({
      iss: this.#issuer(),
      sub: user,
      aud: this.#service(),
      iat: now,
      exp: now + expiresIn,
      jti: randomBytes(8).toString('hex'),
      access,
    });
    return { token, expiresIn, issuedAt: new Date(now * 1000).toISOString(), access };
  }

  #refreshToken(user: string): string {
    const now = Math.floor(Date.now() / 1000);
    return this.#sign({
      iss: this.#issuer(),
      sub: user,
      aud: this.#service(),
      iat: now,
      exp: now + 30 * 24 * 3600,
      jti: randomBytes(8).toString('hex'),
      typ: 'refresh',
    });
  }

  /** handleToken serves GET and POST `/token`. */
  async handleToken(
    req: IncomingMessage,
    res: ServerResponse,
    query: URLSearchParams,
  ): Promise<void> {
    const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      const text = JSON.stringify(body);
      res.writeHead(status, {
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(text),
        'Cache-Control': 'no-store',
        ...headers,
      });
      res.end(text);
    };
    if (req.method === 'GET') {
      req.resume();
      let user: string | undefined;
      const creds = parseBasic(req.headers.authorization);
      if (creds !== undefined) {
        if (!(await this.#passwords.check(req, creds.user, creds.password))) {
          const err = new HttpError(401, SpecErrorCode.Unauthorized, 'invalid credentials');
          send(401, JSON.parse(err.body()), {
            'WWW-Authenticate': `Basic realm=${quote(this.#realm(req))}`,
          });
          return;
        }
        user = creds.user;
      }
      const issued = this.#issue(user, query.getAll('scope'));
      send(200, {
        token: issued.token,
        access_token: issued.token,
        expires_in: issued.expiresIn,
        issued_at: issued.issuedAt,
      });
      return;
    }
    if (req.method === 'POST') {
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of req as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > 64 * 1024) {
          send(400, { error: 'invalid_request', error_description: 'body too large' });
          return;
        }
        chunks.push(chunk);
      }
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const grant = form.get('grant_type');
      const scopes = (form.get('scope') ?? '').split(' ').filter((s) => s !== '');
      let user: string;
      if (grant === 'password') {
        const u = form.get('username') ?? '';
        if (!(await this.#passwords.check(req, u, form.get('password') ?? ''))) {
          send(400, { error: 'invalid_grant', error_description: 'invalid credentials' });
          return;
        }
        user = u;
      } else if (grant === 'refresh_token') {
        const claims = this.#verify(form.get('refresh_token') ?? '');
        if (
          claims?.typ !== 'refresh' ||
          claims.sub === undefined ||
          !this.#passwords.has(claims.sub)
        ) {
          send(400, { error: 'invalid_grant', error_description: 'invalid refresh token' });
          return;
        }
        user = claims.sub;
      } else {
        send(400, { error: 'unsupported_grant_type' });
        return;
      }
      const issued = this.#issue(user, scopes);
      send(200, {
        access_token: issued.token,
        token_type: 'Bearer',
        expires_in: issued.expiresIn,
        issued_at: issued.issuedAt,
        refresh_token: this.#refreshToken(user),
        scope: (issued.access ?? [])
          .map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`)
          .join(' '),
      });
      return;
    }
    req.resume();
    send(405, JSON.parse(new HttpError(405, SpecErrorCode.Unsupported).body()), {
      Allow: 'GET, POST',
    });
  }
}
