import { fileSystemError, isLadingError } from '@lading/core';

/** ExitCode is what `lading` exits with, so scripts can tell failures apart. */
export const ExitCode = {
  Ok: 0,
  Failure: 1,
  Usage: 2,
  Auth: 3,
  NotFound: 4,
  Network: 5,
} as const;

/** ExitCode is the union of the exit codes. */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** UsageError is a mistake on the command line: exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
  readonly hint: string | undefined;
  constructor(message: string, hint?: string) {
    super(message);
    this.hint = hint;
  }
}

const hints: Record<string, string> = {
  UNAUTHORIZED: 'check the credentials (lading auth login REGISTRY, or --username/--password)',
  DENIED: 'the credentials are valid but lack permission for this repository',
  NOT_FOUND: 'check the repository name and tag (lading ls REPO lists tags)',
  NETWORK:
    'is the registry running and reachable? (plain http is used for localhost automatically; --insecure otherwise)',
  TIMEOUT: 'the registry did not answer in time',
  INVALID_REFERENCE: 'references look like host[:port]/repository[:tag][@sha256:...]',
  DIGEST_MISMATCH: 'the content changed or was corrupted in transit; nothing was written',
  UNSAFE_PATH:
    'a layer path escapes the destination directory, or a layout file is a symlink or not a regular file',
  INVALID_LAYER:
    'a layer is not a complete tar archive (did its producer fail?); nothing was tagged',
};

// Errors about a local file or directory (they carry its `path`) get a hint
// about the path, never the registry one.
const localHints: Record<string, string> = {
  NOT_FOUND:
    'check the path, or name one image: oci:DIR[:TAG] is an OCI layout directory, docker-archive:FILE[:TAG] a tar file',
  CONFLICT: 'choose another path, or remove what is there',
};

function isLocal(err: unknown): boolean {
  return typeof (err as { path?: unknown } | null)?.path === 'string';
}

/** classify maps an error to the exit code and the hint printed with it. */
export function classify(err: unknown): { code: ExitCode; hint: string | undefined } {
  if (err instanceof UsageError)
    return { code: ExitCode.Usage, hint: err.hint ?? 'see lading --help' };
  if (isLadingError(err)) {
    const hint = Array.isArray((err as { offered?: unknown }).offered)
      ? 'pass one of the platforms offered to --platform (os/arch[/variant])'
      : isLocal(err)
        ? (localHints[err.code] ?? 'check the path and its permissions')
        : hints[err.code];
    switch (err.code) {
      case 'UNAUTHORIZED':
      case 'DENIED':
        return { code: ExitCode.Auth, hint };
      case 'NOT_FOUND':
        return { code: ExitCode.NotFound, hint };
      case 'NETWORK':
      case 'TIMEOUT':
        return { code: ExitCode.Network, hint };
      case 'INVALID_REFERENCE':
      case 'INVALID_DIGEST':
      case 'INVALID_ARGUMENT':
        return { code: ExitCode.Usage, hint };
      default:
        return { code: ExitCode.Failure, hint };
    }
  }
  const sys = (err as { code?: unknown } | null)?.code;
  if (sys === 'ENOENT') return { code: ExitCode.NotFound, hint: 'check the path' };
  if (sys === 'ECONNREFUSED' || sys === 'ECONNRESET' || sys === 'ENOTFOUND')
    return { code: ExitCode.Network, hint: hints.NETWORK };
  return { code: ExitCode.Failure, hint: undefined };
}

/**
 * typed turns a raw Node file-system error (it has a `syscall` and a
 * `path`) into a typed one-line error naming the path; others pass as is.
 */
export function typed(err: unknown): unknown {
  if (isLadingError(err) || err instanceof UsageError) return err;
  const e = err as { syscall?: unknown; path?: unknown } | null;
  if (typeof e?.syscall === 'string' && typeof e.path === 'string') {
    return fileSystemError(err, e.path);
  }
  return err;
}

/** describe renders an error as one line, without credentials or stack. */
export function describe(err: unknown): string {
  if (err instanceof Error) return redact(err.message.split('\n')[0] ?? err.message);
  return redact(String(err));
}

/** redact removes credentials that may appear in URLs or headers. */
export function redact(text: string): string {
  return text
    .replace(/(\/\/)[^/@\s:]+:[^/@\s]+@/g, '$1***:***@')
    .replace(/(authorization:\s*)(\S+\s+)?\S+/gi, '$1***')
    .replace(
      /([?&](?:token|sig|signature|password|access_token|X-Amz-Signature)=)[^&\s]+/gi,
      '$1***',
    );
}
