import { parseDigest, type Digest } from './digest.js';
import { InvalidReferenceError } from './errors.js';

/** DOCKER_HUB is the registry name used for Docker Hub references. */
export const DOCKER_HUB = 'docker.io';
/** DOCKER_HUB_API is the host that serves Docker Hub's registry API. */
export const DOCKER_HUB_API = 'registry-1.docker.io';
const legacyHub = 'index.docker.io';
const officialPrefix = 'library/';
const defaultTag = 'latest';
/** NAME_TOTAL_LENGTH_MAX is the longest `registry/repository` distribution accepts. */
export const NAME_TOTAL_LENGTH_MAX = 255;

// The grammar of github.com/distribution/reference (reference.go), written
// out piece by piece so that errors can say which piece is wrong.
const alphaNumeric = '[a-z0-9]+';
const separator = '(?:[._]|__|[-]+)';
const pathComponent = `${alphaNumeric}(?:${separator}${alphaNumeric})*`;
const pathComponentRe = new RegExp(`^${pathComponent}$`);
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const domainNameRe = new RegExp(`^${domainComponent}(?:\\.${domainComponent})*$`);
const ipv6Re = /^\[[a-fA-F0-9:]+\]$/;
const portRe = /^[0-9]+$/;
const tagRe = /^[\w][\w.-]{0,127}$/;
const identifierRe = /^[a-f0-9]{64}$/;

/**
 * Reference is a parsed, normalised image reference:
 * `registry/repository[:tag][@digest]`.
 * @see https://github.com/distribution/reference/blob/main/reference.go
 */
export interface Reference {
  /** registry is the host (and port) as written, `docker.io` for Docker Hub. */
  readonly registry: string;
  /** repository is the path inside the registry, `library/x` for official Hub images. */
  readonly repository: string;
  /** tag is the tag; `latest` when the text named neither a tag nor a digest. */
  readonly tag?: string;
  /** digest pins the manifest; kept alongside the tag when both are given. */
  readonly digest?: Digest;
  /** name is `registry/repository`. */
  readonly name: string;
  /** apiHost is the host serving the registry API (`registry-1.docker.io` for Docker Hub). */
  readonly apiHost: string;
  /**
   * context is what names the manifest in `/v2/<name>/manifests/<context>`:
   * the digest when there is one, else the tag.
   */
  context(): string;
  /** familiarName is the short form people type: `ubuntu` for `docker.io/library/ubuntu`. */
  familiarName(): string;
  /** familiarString is {@link Reference.familiarName} with the tag and digest. */
  familiarString(): string;
  /** toString is the full normalised form, which {@link parseReference} reads back unchanged. */
  toString(): string;
}

/** ParseReferenceOptions configure {@link parseReference}. */
export interface ParseReferenceOptions {
  /** defaultRegistry is used when the text names no registry; `docker.io` unless set. */
  readonly defaultRegistry?: string;
  /** defaultTag is used when the text names neither a tag nor a digest; `latest` unless set. */
  readonly defaultTag?: string;
}

class ParsedReference implements Reference {
  readonly registry: string;
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: Digest;
  readonly #tagDefaulted: boolean;

  constructor(
    registry: string,
    repository: string,
    tag: string | undefined,
    digest: Digest | undefined,
    tagDefaulted: boolean,
  ) {
    this.registry = registry;
    this.repository = repository;
    if (tag !== undefined) this.tag = tag;
    if (digest !== undefined) this.digest = digest;
    this.#tagDefaulted = tagDefaulted;
  }

  get name(): string {
    return `${this.registry}/${this.repository}`;
  }

  get apiHost(): string {
    return this.registry === DOCKER_HUB ? DOCKER_HUB_API : this.registry;
  }

  /** tagDefaulted says the tag was not written but filled in from the default. */
  get tagDefaulted(): boolean {
    return this.#tagDefaulted;
  }

  context(): string {
    return this.digest ?? this.tag ?? defaultTag;
  }

  familiarName(): string {
    if (this.registry !== DOCKER_HUB) return this.name;
    return this.repository.startsWith(officialPrefix) &&
      !this.repository.slice(officialPrefix.length).includes('/')
      ? this.repository.slice(officialPrefix.length)
      : this.repository;
  }

  familiarString(): string {
    return this.familiarName() + this.#suffix();
  }

  #suffix(): string {
    return (
      (this.tag === undefined ? '' : `:${this.tag}`) +
      (this.digest === undefined ? '' : `@${this.digest}`)
    );
  }

  toString(): string {
    return this.name + this.#suffix();
  }

  toJSON(): string {
    return this.toString();
  }
}

function fail(input: string, reason: string): never {
  throw new InvalidReferenceError(input, reason);
}

function checkDomain(input: string, domain: string): void {
  if (domain === '') fail(input, 'the registry host is empty');
  let host = domain;
  let port: string | undefined;
  if (domain.startsWith('[')) {
    const close = domain.indexOf(']');
    if (close < 0) fail(input, `unterminated IPv6 address in ${JSON.stringify(domain)}`);
    host = domain.slice(0, close + 1);
    const rest = domain.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) fail(input, `unexpected ${JSON.stringify(rest)} after IPv6 host`);
      port = rest.slice(1);
    }
    if (!ipv6Re.test(host)) fail(input, `invalid IPv6 host ${JSON.stringify(host)}`);
  } else {
    const colon = domain.indexOf(':');
    if (colon >= 0) {
      host = domain.slice(0, colon);
      port = domain.slice(colon + 1);
    }
    if (!domainNameRe.test(host)) {
      fail(
        input,
        `invalid registry host ${JSON.stringify(host)} (want dot-separated components of letters, digits and inner hyphens)`,
      );
    }
  }
  if (port !== undefined) {
    if (!portRe.test(port)) fail(input, `invalid port ${JSON.stringify(port)} (want digits)`);
    if (Number(port) > 65535) fail(input, `port ${port} is out of range`);
  }
}

function checkPath(input: string, path: string): void {
  if (path === '') fail(input, 'the repository name is empty');
  for (const component of path.split('/')) {
    if (component === '') fail(input, 'the repository name has an empty path component');
    if (pathComponentRe.test(component)) continue;
    if (component.toLowerCase() !== component && pathComponentRe.test(component.toLowerCase())) {
      fail(input, 'repository name must be lowercase');
    }
    if (/[._-]$/.test(component)) {
      fail(input, `path component ${JSON.stringify(component)} ends with a separator`);
    }
    if (/^[._-]/.test(component)) {
      fail(input, `path component ${JSON.stringify(component)} starts with a separator`);
    }
    fail(
      input,
      `invalid path component ${JSON.stringify(component)} (want lowercase letters and digits joined by ".", "_", "__" or "-")`,
    );
  }
}

/**
 * splitDomain decides, as docker does, whether the first path segment is a
 * registry: it is when it contains "." or ":", is "localhost", is an IPv6
 * literal, or has uppercase letters (which a repository cannot).
 */
function splitDomain(name: string): [string | undefined, string] {
  const slash = name.indexOf('/');
  if (slash < 0) return [undefined, name];
  const first = name.slice(0, slash);
  if (/[.:[]/.test(first) || first === 'localhost' || first.toLowerCase() !== first) {
    return [first, name.slice(slash + 1)];
  }
  return [undefined, name];
}

/**
 * parseReference parses and normalises an image reference the way docker
 * does (distribution/reference `ParseNormalizedNamed`): Docker Hub is the
 * default registry, single-segment Hub names get `library/`,
 * `index.docker.io` becomes `docker.io`, and `latest` is the tag when the
 * text names neither a tag nor a digest. Tag and digest may both be given.
 * @throws INVALID_REFERENCE with the input and the reason.
 */
export function parseReference(text: string, options: ParseReferenceOptions = {}): Reference {
  if (typeof text !== 'string') fail(String(text), 'not a string');
  if (text === '') fail(text, 'the reference is empty');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    fail(text, 'a reference has no scheme; drop the "scheme://" prefix');
  }
  if (/\s/.test(text)) fail(text, 'a reference contains no whitespace');
  if (identifierRe.test(text)) {
    fail(text, 'a 64-character hex string is an image ID, not a repository name');
  }

  let rest = text;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  // user[:password]@host/…: a URL's userinfo, which references do not carry
  // (the '@' of a digest comes after the last '/').
  if (at >= 0 && at < rest.lastIndexOf('/') && !rest.slice(0, at).includes('/')) {
    fail(
      text,
      'credentials cannot be given in a reference; pass them as options (--username, --password-stdin) or store them (lading auth login)',
    );
  }
  if (at >= 0) {
    const digestText = rest.slice(at + 1);
    rest = rest.slice(0, at);
    try {
      digest = parseDigest(digestText);
    } catch (err) {
      fail(text, `bad digest: ${(err as Error).message}`);
    }
  }

  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/') && colon > rest.lastIndexOf(']')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (tag === '') fail(text, 'the tag after ":" is empty');
    if (!tagRe.test(tag)) {
      fail(
        text,
        tag.length > 128
          ? `the tag is ${tag.length} characters long (at most 128)`
          : `invalid tag ${JSON.stringify(tag)} (want [A-Za-z0-9_][A-Za-z0-9_.-]*)`,
      );
    }
  }

  let [domain, path] = splitDomain(rest);
  if (domain !== undefined) checkDomain(text, domain);
  checkPath(text, path);
  if (domain === undefined) {
    domain = options.defaultRegistry ?? DOCKER_HUB;
    checkDomain(text, domain);
  }
  if (domain === legacyHub) domain = DOCKER_HUB;
  if (domain === DOCKER_HUB && !path.includes('/')) path = officialPrefix + path;

  const fullLength = domain.length + 1 + path.length;
  if (fullLength > NAME_TOTAL_LENGTH_MAX) {
    fail(
      text,
      `the repository name is ${fullLength} characters long (at most ${NAME_TOTAL_LENGTH_MAX})`,
    );
  }

  const tagDefaulted = tag === undefined && digest === undefined;
  if (tagDefaulted) tag = options.defaultTag ?? defaultTag;
  return new ParsedReference(domain, path, tag, digest, tagDefaulted);
}

/** isValidReference tells whether `text` parses, without throwing. */
export function isValidReference(text: string): boolean {
  try {
    parseReference(text);
    return true;
  } catch {
    return false;
  }
}

/** formatReference is the full normalised text of a reference (same as `toString()`). */
export function formatReference(ref: Reference): string {
  return ref.toString();
}

function rebuild(ref: Reference, tag: string | undefined, digest: Digest | undefined): Reference {
  return new ParsedReference(ref.registry, ref.repository, tag, digest, false);
}

/**
 * withTag returns `ref` with its tag set to `tag`. A digest, if any, is
 * kept (as distribution's `WithTag` does).
 * @throws INVALID_REFERENCE when the tag is malformed.
 */
export function withTag(ref: Reference, tag: string): Reference {
  if (!tagRe.test(tag)) {
    fail(`${ref.name}:${tag}`, `invalid tag ${JSON.stringify(tag)}`);
  }
  return rebuild(ref, tag, ref.digest);
}

/**
 * withDigest returns `ref` pinned to `digest`. A tag that was written
 * explicitly is kept; one filled in by default (`latest`) is dropped.
 * @throws INVALID_REFERENCE when the digest is malformed.
 */
export function withDigest(ref: Reference, digest: string): Reference {
  let d: Digest;
  try {
    d = parseDigest(digest);
  } catch (err) {
    fail(`${ref.name}@${digest}`, `bad digest: ${(err as Error).message}`);
  }
  const defaulted = ref instanceof ParsedReference && ref.tagDefaulted;
  return rebuild(ref, defaulted ? undefined : ref.tag, d);
}
