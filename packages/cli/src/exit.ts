/** ExitCode is what `lading` exits with, so scripts can tell failures apart. */
export const ExitCode = {
  Ok: 0,
  Failure: 1,
  Usage: 2,
  Auth: 3,
  NotFound: 4,
  Network: 5,
  /** Interrupted is 128 + SIGINT, as shells report a Ctrl-C. */
  Interrupted: 130,
  /** Terminated is 128 + SIGTERM. */
  Terminated: 143,
} as const;

/** ExitCode is the union of the exit codes. */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

const usageBrand = Symbol.for('lading.usage-error');

/** UsageError is a mistake on the command line: exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
  readonly hint: string | undefined;
  readonly [usageBrand] = true;
  constructor(message: string, hint?: string) {
    super(message);
    this.hint = hint;
  }
}

/**
 * isUsageError tells a UsageError from any copy of this module: `serve`
 * runs from dist/ beside the bundle, with a UsageError class of its own.
 */
export function isUsageError(err: unknown): err is UsageError {
  return (
    typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[usageBrand] === true
  );
}

// The brand @lading/core puts on every LadingError (see isLadingError there);
// checked here so that `lading --version` need not load @lading/core.
const ladingBrand = Symbol.for('lading.error');

function ladingCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  if ((err as Record<symbol, unknown>)[ladingBrand] !== true) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * errorCode is the stable code `--json` errors carry: the LadingError code,
 * `USAGE` for a command-line mistake, the system code (ENOENT, …) or `ERROR`.
 */
export function errorCode(err: unknown): string {
  if (isUsageError(err)) return 'USAGE';
  const code = ladingCode(err) ?? (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code) ? code : 'ERROR';
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
  SIZE_MISMATCH: 'the content changed or was corrupted in transit; nothing was written',
  UNSAFE_PATH:
    'a layer path escapes the destination directory, or a layout file is a symlink or not a regular file',
  INVALID_LAYER:
    'a layer is not a complete tar archive (did its producer fail?); nothing was tagged',
  IO: 'a local file could not be read or written: check it is there, unchanged, and readable',
};

// Errors about a local file or directory (they carry its `path`) get a hint
// about the path, never the registry one.
const localHints: Record<string, string> = {
  NOT_FOUND:
    'check the path, or name one image: oci:DIR[:TAG] is an OCI layout directory, docker-archive:FILE[:TAG] a tar file',
  CONFLICT: 'choose another path, or remove what is there',
  INVALID_ARGUMENT:
    'name one image in the location: oci:DIR:TAG, oci:DIR@sha256:…, docker-archive:FILE:REPO:TAG',
};

function isLocal(err: unknown): boolean {
  return typeof (err as { path?: unknown } | null)?.path === 'string';
}

/** classify maps an error to the exit code and the hint printed with it. */
export function classify(err: unknown): { code: ExitCode; hint: string | undefined } {
  if (isUsageError(err)) return { code: ExitCode.Usage, hint: err.hint ?? 'see lading --help' };
  const lading = ladingCode(err);
  if (lading !== undefined) {
    // A command that knows better than the code (see blob to stdout) sets its own.
    const own = (err as { hint?: unknown }).hint;
    const hint =
      typeof own === 'string'
        ? own
        : (err as { diffId?: unknown }).diffId === true
          ? "the image's config names another diff_id than its layer holds: the image is inconsistent, or was altered; nothing was written"
          : Array.isArray((err as { offered?: unknown }).offered)
            ? 'pass one of the platforms offered to --platform (os/arch[/variant])'
            : isLocal(err)
              ? // (what lading does not support, the message names: no path to check)
                lading === 'UNSUPPORTED'
                ? undefined
                : (localHints[lading] ?? 'check the path and its permissions')
              : hints[lading];
    switch (lading) {
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
 * @lading/core is loaded only then, so `lading --version` need not load it.
 */
export async function typed(err: unknown): Promise<unknown> {
  if (ladingCode(err) !== undefined || isUsageError(err)) return err;
  const e = err as { syscall?: unknown; path?: unknown } | null;
  if (typeof e?.syscall === 'string' && typeof e.path === 'string') {
    const { fileSystemError } = await import('@lading/core');
    return fileSystemError(err, e.path);
  }
  return err;
}

/** describe renders an error as one line, without credentials, control characters or stack. */
export function describe(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return redact(sanitize(text.split('\n')[0] ?? text));
}

// ESC sequences (CSI, OSC, and two-byte ones), then the remaining C0, DEL and
// C1 controls. Tab and newline are kept only with `multiline`.
/* eslint-disable no-control-regex -- stripping control characters is the point */
const escSequence =
  /\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)?|\u001b[@-_]?|\u009b[0-?]*[ -/]*[@-~]/g;
const controls = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;
/* eslint-enable no-control-regex */
const lineBreaks = /[\t\n]/g;

/**
 * sanitize removes terminal control sequences and control characters from
 * text a registry (or any other server) supplied, so that it cannot move
 * the cursor, recolour or retitle the user's terminal. With `multiline`,
 * newlines and tabs are kept; otherwise they become spaces.
 */
export function sanitize(text: string, multiline = false): string {
  const stripped = text.replace(escSequence, '').replace(controls, '');
  return multiline ? stripped : stripped.replace(lineBreaks, ' ');
}

/**
 * userinfo is `user:password@` at the start of a word, as in a reference
 * typed without its scheme (`alice:secret@host/repo`); not `name:tag@sha256:…`.
 */
const userinfo =
  /(^|[\s"'(=<[])[^\s"'/@:]+:[^\s"'/@]+@(?![a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,})/g;

/** redact removes credentials that may appear in URLs or headers. */
export function redact(text: string): string {
  return text
    .replace(/(\/\/)[^/@\s:]+:[^/@\s]+@/g, '$1***:***@')
    .replace(userinfo, '$1***:***@')
    .replace(/(authorization:\s*)(\S+\s+)?\S+/gi, '$1***')
    .replace(
      /([?&](?:token|sig|signature|password|access_token|X-Amz-Signature)=)[^&\s]+/gi,
      '$1***',
    );
}
