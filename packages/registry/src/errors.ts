/**
 * SpecErrorCode is every error code the distribution spec defines.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes
 */
export const SpecErrorCode = {
  BlobUnknown: 'BLOB_UNKNOWN',
  BlobUploadInvalid: 'BLOB_UPLOAD_INVALID',
  BlobUploadUnknown: 'BLOB_UPLOAD_UNKNOWN',
  DigestInvalid: 'DIGEST_INVALID',
  ManifestBlobUnknown: 'MANIFEST_BLOB_UNKNOWN',
  ManifestInvalid: 'MANIFEST_INVALID',
  ManifestUnknown: 'MANIFEST_UNKNOWN',
  NameInvalid: 'NAME_INVALID',
  NameUnknown: 'NAME_UNKNOWN',
  SizeInvalid: 'SIZE_INVALID',
  Unauthorized: 'UNAUTHORIZED',
  Denied: 'DENIED',
  Unsupported: 'UNSUPPORTED',
  TooManyRequests: 'TOOMANYREQUESTS',
} as const;

/** SpecErrorCode is the union of the spec's error codes. */
export type SpecErrorCode = (typeof SpecErrorCode)[keyof typeof SpecErrorCode];

const messages: Record<SpecErrorCode, string> = {
  BLOB_UNKNOWN: 'blob unknown to registry',
  BLOB_UPLOAD_INVALID: 'blob upload invalid',
  BLOB_UPLOAD_UNKNOWN: 'blob upload unknown to registry',
  DIGEST_INVALID: 'provided digest did not match uploaded content',
  MANIFEST_BLOB_UNKNOWN: 'manifest references a manifest or blob unknown to registry',
  MANIFEST_INVALID: 'manifest invalid',
  MANIFEST_UNKNOWN: 'manifest unknown to registry',
  NAME_INVALID: 'invalid repository name',
  NAME_UNKNOWN: 'repository name not known to registry',
  SIZE_INVALID: 'provided length did not match content length',
  UNAUTHORIZED: 'authentication required',
  DENIED: 'requested access to the resource is denied',
  UNSUPPORTED: 'the operation is unsupported',
  TOOMANYREQUESTS: 'too many requests',
};

/**
 * HttpError is what a registry handler throws to answer with a spec error
 * body `{ errors: [{ code, message, detail }] }`. It never leaves the server:
 * clients see the status, the headers and the JSON body.
 */
export class HttpError extends Error {
  override name = 'HttpError';
  readonly status: number;
  readonly code: SpecErrorCode;
  readonly detail: unknown;
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    status: number,
    code: SpecErrorCode,
    message?: string,
    detail?: unknown,
    headers: Record<string, string> = {},
  ) {
    super(message ?? messages[code]);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.headers = headers;
  }

  /** body is the JSON error document the spec prescribes. */
  body(): string {
    const entry: Record<string, unknown> = { code: this.code, message: this.message };
    if (this.detail !== undefined) entry.detail = this.detail;
    return JSON.stringify({ errors: [entry] });
  }
}
