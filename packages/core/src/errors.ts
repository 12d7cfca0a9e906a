/**
 * ErrorCode is every code a lading error can carry. Callers branch on the
 * code, never on the message.
 */
export const ErrorCode = {
  InvalidReference: 'INVALID_REFERENCE',
  InvalidDigest: 'INVALID_DIGEST',
  DigestMismatch: 'DIGEST_MISMATCH',
  SizeMismatch: 'SIZE_MISMATCH',
  LayerConsumed: 'LAYER_CONSUMED',
  InvalidManifest: 'INVALID_MANIFEST',
  InvalidConfig: 'INVALID_CONFIG',
  ManifestTooLarge: 'MANIFEST_TOO_LARGE',
  UnsupportedMediaType: 'UNSUPPORTED_MEDIA_TYPE',
  InvalidArgument: 'INVALID_ARGUMENT',
  Unauthorized: 'UNAUTHORIZED',
  Denied: 'DENIED',
  NotFound: 'NOT_FOUND',
  Registry: 'REGISTRY_ERROR',
  Network: 'NETWORK',
  Timeout: 'TIMEOUT',
  Aborted: 'ABORTED',
  UploadFailed: 'UPLOAD_FAILED',
  UnsafePath: 'UNSAFE_PATH',
  Unsupported: 'UNSUPPORTED',
  Conflict: 'CONFLICT',
  Io: 'IO',
  /** InvalidLayer: a layer's bytes are not a complete tar archive (or do not decompress), or its producer failed. */
  InvalidLayer: 'INVALID_LAYER',
} as const;

/** ErrorCode is the union of every lading error code. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const brand = Symbol.for('lading.error');

/** LadingErrorOptions are the optional parts of every lading error. */
export interface LadingErrorOptions {
  readonly cause?: unknown;
}

/**
 * LadingError is the base of every error lading throws. It carries a stable
 * `code`, a native `cause`, and a `Symbol.for` brand so that
 * {@link isLadingError} works across two installed copies of the package.
 */
export class LadingError extends Error {
  readonly code: ErrorCode;
  override name = 'LadingError';

  constructor(code: ErrorCode, message: string, options?: LadingErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    Object.defineProperty(this, brand, { value: true });
  }
}

/**
 * isLadingError tells whether `err` is a lading error (from any installed
 * copy of @lading/core), optionally with the given code.
 */
export function isLadingError(err: unknown, code?: ErrorCode): err is LadingError {
  if (typeof err !== 'object' || err === null) return false;
  if ((err as Record<symbol, unknown>)[brand] !== true) return false;
  return code === undefined || (err as { code?: unknown }).code === code;
}

/** InvalidReferenceError reports an image reference that does not parse. */
export class InvalidReferenceError extends LadingError {
  override name = 'InvalidReferenceError';
  readonly input: string;
  /**
   * The message shows `input` with any `user:password@` before the host
   * (a reference typed with credentials in it) as `***:***@`.
   */
  constructor(input: string, reason: string) {
    const shown = input.replace(
      /^((?:[a-z][a-z0-9+.-]*:\/\/)?)[^/@:]+:[^/@]+@(?![a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,})/,
      '$1***:***@',
    );
    super(ErrorCode.InvalidReference, `invalid reference ${JSON.stringify(shown)}: ${reason}`);
    this.input = input;
  }
}

/** InvalidDigestError reports a digest string that does not validate. */
export class InvalidDigestError extends LadingError {
  override name = 'InvalidDigestError';
  constructor(input: string, reason: string) {
    super(
      ErrorCode.InvalidDigest,
      `invalid digest ${JSON.stringify(input.slice(0, 200))}: ${reason}`,
    );
  }
}

/** DigestMismatchError reports content whose digest is not the one expected. */
export class DigestMismatchError extends LadingError {
  override name = 'DigestMismatchError';
  readonly expected: string;
  readonly actual: string;
  /**
   * diffId says the digests compared are a layer's uncompressed tar and the
   * diff_id its image's config names: the image contradicts itself (or was
   * altered), where other mismatches mean bytes changed on their way.
   */
  readonly diffId: boolean;
  constructor(
    expected: string,
    actual: string,
    what = 'content',
    options: { readonly diffId?: boolean } = {},
  ) {
    super(ErrorCode.DigestMismatch, `${what} digest mismatch: expected ${expected}, got ${actual}`);
    this.expected = expected;
    this.actual = actual;
    this.diffId = options.diffId ?? false;
  }
}

/** SizeMismatchError reports content whose length is not the one expected. */
export class SizeMismatchError extends LadingError {
  override name = 'SizeMismatchError';
  readonly expected: number;
  readonly actual: number;
  constructor(expected: number, actual: number, what = 'content') {
    super(
      ErrorCode.SizeMismatch,
      `${what} size mismatch: expected ${expected} bytes, got ${actual}`,
    );
    this.expected = expected;
    this.actual = actual;
  }
}

/** LayerConsumedError is thrown when a single-pass layer is read twice. */
export class LayerConsumedError extends LadingError {
  override name = 'LayerConsumedError';
  constructor(
    message = 'this stream layer has already been consumed; single-pass layers can be read once',
  ) {
    super(ErrorCode.LayerConsumed, message);
  }
}

/** AbortedError reports an operation cancelled through its AbortSignal. */
export class AbortedError extends LadingError {
  override name = 'AbortedError';
  constructor(reason?: unknown) {
    super(ErrorCode.Aborted, 'the operation was aborted', { cause: reason });
  }
}

/** throwIfAborted throws an {@link AbortedError} when `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new AbortedError(signal.reason);
}

/**
 * LocalPathError is a lading error about a local file or directory (an OCI
 * layout, a docker archive, an extraction target): `path` names it, so a
 * CLI can hint at the path rather than at a registry.
 */
export class LocalPathError extends LadingError {
  override name = 'LocalPathError';
  readonly path: string;
  constructor(code: ErrorCode, message: string, path: string, options?: LadingErrorOptions) {
    super(code, message, options);
    this.path = path;
  }
}

const errnoMessages: Readonly<Record<string, readonly [ErrorCode, string]>> = {
  ENOENT: [ErrorCode.NotFound, 'no such file or directory'],
  EEXIST: [ErrorCode.Conflict, 'already exists'],
  ENOTDIR: [ErrorCode.Io, 'not a directory (or a parent is not one)'],
  EISDIR: [ErrorCode.Io, 'is a directory'],
  EACCES: [ErrorCode.Io, 'permission denied'],
  EPERM: [ErrorCode.Io, 'operation not permitted'],
  EROFS: [ErrorCode.Io, 'read-only file system'],
  ENOSPC: [ErrorCode.Io, 'no space left on device'],
  EMFILE: [ErrorCode.Io, 'too many open files'],
};

/**
 * fileSystemError turns a Node file-system error met at `path` into a
 * one-line {@link LocalPathError}: ENOENT becomes NOT_FOUND, EEXIST
 * CONFLICT, anything else IO. Lading errors pass through unchanged.
 */
export function fileSystemError(err: unknown, path: string, doing?: string): LadingError {
  if (isLadingError(err)) return err;
  const errno = (err as { code?: unknown } | null)?.code;
  const known = typeof errno === 'string' ? errnoMessages[errno] : undefined;
  const what =
    known?.[1] ?? (err instanceof Error ? err.message.split('\n')[0] : String(err)) ?? 'failed';
  const prefix = doing === undefined ? '' : `${doing}: `;
  return new LocalPathError(known?.[0] ?? ErrorCode.Io, `${prefix}${path}: ${what}`, path, {
    cause: err,
  });
}
