import { ErrorCode, LadingError } from '@lading/core';

/** unsafe is the UNSAFE_PATH of a tar entry extract refuses. */
export function unsafe(name: string, why: string): LadingError {
  return new LadingError(
    ErrorCode.UnsafePath,
    `refusing tar entry ${JSON.stringify(name)}: ${why}`,
  );
}

/**
 * safeRelative turns a tar path into a relative one: `./` dropped, empty and
 * `.` components removed; any `..` component is refused, and so is an
 * absolute path unless `scoped` (then it is taken from the root, as
 * containerd does).
 * `shown` is the name as messages quote it.
 * @throws UNSAFE_PATH for `..` components, absolute paths or NUL bytes.
 */
export function safeRelative(name: string, scoped = false, shown = name): string {
  if (name.includes('\0')) throw unsafe(shown, 'NUL byte in the path');
  if (!scoped && name.startsWith('/') && name.replace(/^\/+/, '') !== '') {
    throw unsafe(shown, 'the path is absolute');
  }
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw unsafe(shown, 'the path has a ".." component');
  return parts.join('/');
}
