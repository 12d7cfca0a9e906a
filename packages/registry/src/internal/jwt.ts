import { createHmac, timingSafeEqual } from 'node:crypto';

/** TokenClaims are the JWT claims of the registry's bearer and refresh tokens. */
export interface TokenClaims {
  iss: string;
  sub?: string | undefined;
  aud: string;
  exp: number;
  iat: number;
  jti: string;
  typ?: 'refresh';
  access?: { type: string; name: string; actions: string[] }[];
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** signToken signs `claims` as an HS256 JWT with `secret`. */
export function signToken(secret: Buffer, claims: TokenClaims): string {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/**
 * verifyToken answers the claims of `token` when it is an HS256 JWT signed
 * with `secret`, not expired, issued by `issuer` for `audience`; else undefined.
 */
export function verifyToken(
  secret: Buffer,
  token: string,
  issuer: string,
  audience: string,
): TokenClaims | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  const [head, body, sig] = parts as [string, string, string];
  const expected = createHmac('sha256', secret).update(`${head}.${body}`).digest();
  const given = Buffer.from(sig, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  let claims: TokenClaims;
  try {
    claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as TokenClaims;
  } catch {
    return undefined;
  }
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.exp !== 'number' || claims.exp < now) return undefined;
  if (claims.iss !== issuer || claims.aud !== audience) return undefined;
  return claims;
}
