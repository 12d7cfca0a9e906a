import { ErrorCode, LadingError } from '@lading/core';

/** RegistryErrorDetail is one entry of the spec's error body `errors[]`. */
export type RegistryErrorDetail = {
  readonly code: string;
  readonly message?: string;
  readonly detail?: unknown;
};

/** RegistryErrorInit builds a {@link RegistryError}. */
export interface RegistryErrorInit {
  readonly method: string;
  /** url of the request; credentials and query values are redacted before it is stored. */
  readonly url: string | URL;
  /** status is the HTTP status; undefined for network failures. */
  readonly status?: number | undefined;
  readonly errors?: readonly RegistryErrorDetail[];
  /** temporary says a retry may succeed (408, 429, 5xx, connection resets). */
  readonly temporary?: boolean;
  /** retryAfterMs is the server's Retry-After, when it sent one. */
  readonly retryAfterMs?: number | undefined;
  readonly message?: string;
  readonly cause?: unknown;
  readonly code?: ErrorCode;
}

/**
 * redactUrl drops userinfo and replaces every query value with `REDACTED`
 * (upload locations and object-storage redirects carry signatures there).
 */
export function redactUrl(url: string | URL): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return '<invalid url>';
  }
  u.username = '';
  u.password = '';
  const keys = [...new Set(u.searchParams.keys())];
  const params = new URLSearchParams();
  for (const k of keys)
    params.append(k, k === 'digest' || k === 'n' ? (u.searchParams.get(k) ?? '') : 'REDACTED');
  u.search = params.toString();
  return u.toString();
}

function codeForStatus(status: number | undefined): ErrorCode {
  if (status === undefined) return ErrorCode.Network;
  if (status === 401) return ErrorCode.Unauthorized;
  if (status === 403) return ErrorCode.Denied;
  if (status === 404) return ErrorCode.NotFound;
  return ErrorCode.Registry;
}

/** isTemporaryStatus tells whether a status is worth a retry: 408, 429 and 5xx. */
export function isTemporaryStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status <= 599);
}

/**
 * RegistryError is a failed registry request (after ggcr's transport.Error):
 * the method, the redacted URL, the status, the spec's `errors[]` and whether
 * it is `temporary`. Its code is UNAUTHORIZED (401), DENIED (403), NOT_FOUND
 * (404), NETWORK (no answer) or REGISTRY_ERROR.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes
 */
export class RegistryError extends LadingError {
  override name = 'RegistryError';
  readonly method: string;
  readonly url: string;
  readonly status: number | undefined;
  readonly errors: readonly RegistryErrorDetail[];
  readonly temporary: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(init: RegistryErrorInit) {
    const url = redactUrl(init.url);
    const first = init.errors?.[0];
    const what =
      init.message ??
      (init.status === undefined
        ? 'no response'
        : `${init.status}${first === undefined ? '' : ` ${first.code}${first.message === undefined ? '' : `: ${first.message}`}`}`);
    super(init.code ?? codeForStatus(init.status), `${init.method} ${url}: ${what}`, {
      cause: init.cause,
    });
    this.method = init.method;
    this.url = url;
    this.status = init.status;
    this.errors = init.errors ?? [];
    this.temporary =
      init.temporary ?? (init.status === undefined ? true : isTemporaryStatus(init.status));
    this.retryAfterMs = init.retryAfterMs;
  }
}

/**
 * AuthError reports credentials that were refused or a token endpoint that
 * would not issue a token: code UNAUTHORIZED or DENIED.
 */
export class AuthError extends LadingError {
  override name = 'AuthError';
  constructor(
    code: typeof ErrorCode.Unauthorized | typeof ErrorCode.Denied,
    message: string,
    cause?: unknown,
  ) {
    super(code, message, { cause });
  }
}

/** UploadError reports a blob upload that could not be completed (UPLOAD_FAILED). */
export class UploadError extends LadingError {
  override name = 'UploadError';
  /** restartable says the upload may succeed from the start with a new session (re-openable layers). */
  readonly restartable: boolean;
  constructor(message: string, cause?: unknown, restartable = false) {
    super(ErrorCode.UploadFailed, message, { cause });
    this.restartable = restartable;
  }
}
