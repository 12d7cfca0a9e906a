import { isDigest, isLadingError, parseDigest } from '@lading/core';
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
    const { path, tag, digest } = splitPathTag(text.slice(4), 'oci');
    if (tag !== undefined && !digest && !ociRefName.test(tag))
      throw new UsageError(
        `oci: tag ${JSON.stringify(tag)} is not a valid reference name`,
        'letters, digits and . _ - : @ + between them, / between components (OCI image layout)',
      );
    return { kind: 'oci', dir: path, tag };
  }
  if (text.startsWith('docker-archive:')) {
    const { path, tag, digest } = splitPathTag(
      text.slice('docker-archive:'.length),
      'docker-archive',
    );
    if (tag !== undefined && !digest && !dockerName.test(tag))
      throw new UsageError(
        `docker-archive: name ${JSON.stringify(tag)} is not a valid image reference`,
        'NAME[:TAG] as docker load takes it: lowercase repository, e.g. team/app:v1',
      );
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

/**
 * refuseArchiveForIndex refuses, before any blob moves, to write an index
 * to a docker archive, which holds single-platform images only.
 * @throws UsageError
 */
export function refuseArchiveForIndex(destinations: readonly string[], why: string): void {
  const archive = destinations.find((d) => parseLocation(d).kind === 'docker-archive');
  if (archive !== undefined)
    throw new UsageError(
      `${archive}: a docker archive holds single-platform images, and ${why}`,
      'write the index to a registry or oci:DIR:TAG; lading cp SRC --platform OS/ARCH docker-archive:… copies one image of it',
    );
}

// The names a layout's index may hold (org.opencontainers.image.ref.name,
// image-layout spec): components of letters and digits joined by one of
// - . _ : @ + (or --), separated by '/'.
const ociComponent = '[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*';
const ociRefName = new RegExp(`^${ociComponent}(?:/${ociComponent})*$`);

/**
 * isOciRefName tells whether `name` is one an OCI layout's index may hold
 * as `org.opencontainers.image.ref.name` (what `oci:DIR:TAG` accepts).
 */
export function isOciRefName(name: string): boolean {
  return ociRefName.test(name);
}

// A docker image reference as `docker load` reads RepoTags: an optional
// registry host, lowercase path components, an optional tag.
const label = '[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?';
// A first component is a host only with a dot, a port, or as localhost.
const hostPart = `(?:(?:localhost|${label}(?:\\.${label})+)(?::[0-9]+)?/|${label}:[0-9]+/)?`;
const pathPart = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const dockerName = new RegExp(`^${hostPart}${pathPart}(?:/${pathPart})*(?::\\w[\\w.-]{0,127})?$`);

// The tag is what follows the last ':' when it contains no '/', so
// `oci:/tmp/x:v1` and `docker-archive:out.tar:app:v1` both work.
function splitPathTag(
  rest: string,
  transport: string,
): { path: string; tag: string | undefined; digest: boolean } {
  if (rest === '') throw new UsageError(`${transport}: needs a path`, `${transport}:PATH[:TAG]`);
  // PATH@sha256:… names a manifest (or blob) by digest.
  const at = /@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.exec(rest);
  if (at !== null) {
    const digest = at[0].slice(1);
    try {
      parseDigest(digest);
    } catch (err) {
      if (!isLadingError(err)) throw err;
      throw new UsageError(
        `${transport}: ${err.message}`,
        `${transport}:PATH@sha256:<64 lowercase hex> names an image by digest`,
      );
    }
    return { path: rest.slice(0, at.index), tag: digest, digest: true };
  }
  if (transport === 'docker-archive') {
    const i = rest.indexOf(':');
    if (i < 0) return { path: rest, tag: undefined, digest: false };
    const tag = rest.slice(i + 1);
    return { path: rest.slice(0, i), tag: tag === '' ? undefined : tag, digest: false };
  }
  const i = rest.lastIndexOf(':');
  if (i < 0 || rest.slice(i + 1).includes('/'))
    return { path: rest, tag: undefined, digest: false };
  const tag = rest.slice(i + 1);
  return { path: rest.slice(0, i), tag: tag === '' ? undefined : tag, digest: false };
}

/** namesDigest says whether a location names a manifest by digest. */
export function namesDigest(location: Location): boolean {
  if (location.kind !== 'registry') return location.tag !== undefined && isDigest(location.tag);
  // A digest follows the last '@' (a password's '@' comes before the host).
  return /@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(location.reference);
}
