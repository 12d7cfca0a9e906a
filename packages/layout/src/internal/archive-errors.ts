import { ErrorCode, LadingError } from '@lading/core';

/** notFound is the NOT_FOUND of a blob, manifest or reference missing from an archive. */
export function notFound(what: string): LadingError {
  return new LadingError(ErrorCode.NotFound, `${what} not found in the docker archive`);
}

/** invalid is the INVALID_MANIFEST of an archive member lading cannot read. */
export function invalid(file: string, why: string, cause?: unknown): LadingError {
  return new LadingError(ErrorCode.InvalidManifest, `${file}: ${why}`, { cause });
}

/** jsonOf parses a member read whole (manifest.json, a config). @throws INVALID_MANIFEST */
export function jsonOf(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw invalid(what, 'not JSON', err);
  }
}

/** wrongMode is the UNSUPPORTED of a reader asked to write, or a writer asked to list. */
export function wrongMode(mode: 'read' | 'write'): LadingError {
  return new LadingError(
    ErrorCode.Unsupported,
    `this docker archive target was opened in ${mode} mode`,
  );
}

/** closed is the INVALID_ARGUMENT of an archive used after close(). */
export function closed(): LadingError {
  return new LadingError(ErrorCode.InvalidArgument, 'the archive is closed');
}
