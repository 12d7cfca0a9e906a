import { UsageError } from './exit.js';

/** Location is where an image is read from or written to. */
export type Location =
  | { readonly kind: 'registry'; readonly reference: string }
  | { readonly kind: 'oci'; readonly dir: string; readonly tag: string | undefined }
  | { readonly kind: 'docker-archive'; readonly file: string; readonly tag: string | undefined };

/**
 * parseLocation reads a transport string: `oci:DIR[:TAG]`,
 * `docker-archive:FILE[:TAG]`, `docker://REF` or a plain registry reference.
 */
export function parseLocation(text: string): Location {
  if (text === '') throw new UsageError('an image location is empty');
  if (text.startsWith('oci:')) {
    const { path, tag } = splitPathTag(text.slice(4), 'oci');
    return { kind: 'oci', dir: path, tag };
  }
  if (text.startsWith('docker-archive:')) {
    const { path, tag } = splitPathTag(text.slice('docker-archive:'.length), 'docker-archive');
    return { kind: 'docker-archive', file: path, tag };
  }
  if (text.startsWith('docker://'))
    return { kind: 'registry', reference: text.slice('docker://'.length) };
  const scheme = /^([a-z][a-z0-9+-]*):(?!\d)/.exec(text);
  if (scheme !== null && !text.includes('/')) {
    throw new UsageError(
      `unknown transport "${scheme[1] ?? ''}:" in ${JSON.stringify(text)}`,
      'use a registry reference, oci:DIR[:TAG] or docker-archive:FILE[:TAG]',
    );
  }
  return { kind: 'registry', reference: text };
}

// The tag is what follows the last ':' when it contains no '/', so
// `oci:/tmp/x:v1` and `docker-archive:out.tar:app:v1` both work.
function splitPathTag(rest: string, transport: string): { path: string; tag: string | undefined } {
  if (rest === '') throw new UsageError(`${transport}: needs a path`, `${transport}:PATH[:TAG]`);
  // PATH@sha256:… names a manifest (or blob) by digest.
  const at = /@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.exec(rest);
  if (at !== null) return { path: rest.slice(0, at.index), tag: at[0].slice(1) };
  if (transport === 'docker-archive') {
    const i = rest.indexOf(':');
    if (i < 0) return { path: rest, tag: undefined };
    const tag = rest.slice(i + 1);
    return { path: rest.slice(0, i), tag: tag === '' ? undefined : tag };
  }
  const i = rest.lastIndexOf(':');
  if (i < 0 || rest.slice(i + 1).includes('/')) return { path: rest, tag: undefined };
  const tag = rest.slice(i + 1);
  return { path: rest.slice(0, i), tag: tag === '' ? undefined : tag };
}
