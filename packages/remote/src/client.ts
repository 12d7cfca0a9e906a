import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PassThrough } from 'node:stream';
import {
  DigestMismatchError,
  ErrorCode,
  LadingError,
  MAX_MANIFEST_SIZE,
  MediaType,
  VerifyingStream,
  digestHex,
  digestOf,
  isDigest,
  parseDigest,
  readCapped,
  type Descriptor,
  type Digest,
  type IndexManifest,
  type IoOptions,
  type MediaTypeString,
} from '@lading/core';
import { manifestAccept, markVerified } from '@lading/core/internal';
import { RegistryError } from './errors.js';
import { parseLinkNext } from './internal/challenge.js';
import {
  Transport,
  discard,
  drain,
  errorFromResponse,
  header,
  type SendResponse,
  type TransportOptions,
} from './internal/transport.js';
import { UploadSession } from './upload.js';

/** MANIFEST_SIZE_LIMIT is the largest manifest lading reads or writes (4 MiB). */
export const MANIFEST_SIZE_LIMIT = MAX_MANIFEST_SIZE;

/**
 * RemoteOptions configure every registry call: credentials, transport and
 * retries. Stored credentials (docker/podman config files, credential
 * helpers) are used unless `auth` is given or `useStoredCredentials` is false.
 */
export interface RemoteOptions extends TransportOptions, IoOptions {}

/** FetchedManifest is a manifest read from a registry, verified. */
export type FetchedManifest = {
  readonly bytes: Buffer;
  readonly mediaType: MediaTypeString;
  readonly digest: Digest;
  readonly size: number;
};

/** BlobReadOptions configure {@link RegistryClient.getBlob}. */
export interface BlobReadOptions extends IoOptions {
  /** size, when known, is verified along with the digest. */
  readonly size?: number;
  /** range reads bytes [start, end] (inclusive) and skips verification. */
  readonly range?: { readonly start: number; readonly end?: number };
}

const transports = new WeakMap<object, Map<string, Transport>>();
const noOptions = {};

function transportFor(registry: string, options: RemoteOptions): Transport {
  // Reuse one transport (and so its tokens) per options object and registry.
  const key = options as object;
  let byHost = transports.get(key);
  if (byHost === undefined) {
    byHost = new Map();
    transports.set(key, byHost);
  }
  let t = byHost.get(registry);
  if (t === undefined) {
    t = new Transport(registry, options);
    byHost.set(registry, t);
  }
  return t;
}

function mediaTypeOf(bytes: Buffer, headerType: string | undefined): MediaTypeString {
  try {
    const parsed = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
    if (typeof parsed.mediaType === 'string' && parsed.mediaType !== '') return parsed.mediaType;
  } catch {
    // the caller validates the JSON; the header is the fallback
  }
  return headerType?.split(';')[0]?.trim() ?? MediaType.OciManifest;
}

/**
 * PAGINATION_LIMITS bound what a paginated listing (tags, catalog,
 * referrers) reads from a registry: pages followed, total body bytes and
 * total entries. Past any of them the listing fails with REGISTRY_ERROR
 * rather than growing without bound.
 */
export const PAGINATION_LIMITS = {
  pages: 1000,
  bytes: 64 * 1024 * 1024,
  entries: 1_000_000,
} as const;

/**
 * RegistryClient maps the distribution-spec API of one registry host to
 * methods: ping, blobs, uploads, manifests, tags, catalog and referrers.
 * Every method takes `{ signal }`; reads are verified against digests and
 * sizes; requests are retried as whole sequences on temporary failures.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md
 */
export class RegistryClient {
  /** registry is the host (and port) as written in references. */
  readonly registry: string;
  /** @internal */
  readonly transport: Transport;

  constructor(registry: string, options: RemoteOptions = noOptions) {
    this.registry = registry;
    this.transport = transportFor(registry, options);
  }

  /** baseUrl is the registry's scheme and host. */
  get baseUrl(): string {
    return this.transport.base.origin;
  }

  /**
   * ping checks that the host speaks the registry API (`GET /v2/`) and
   * learns how it wants to be authenticated.
   * @throws NETWORK, REGISTRY_ERROR
   */
  async ping(options: IoOptions = {}): Promise<void> {
    await this.transport.withRetry(() => this.transport.ping(options.signal), options.signal);
  }

  /**
   * verifyCredentials GETs `/v2/` with the configured credentials (a token
   * without repository scope where the registry issues tokens), the way
   * `docker login` checks them.
   * @throws UNAUTHORIZED (wrong credentials), NETWORK
   */
  async verifyCredentials(options: IoOptions = {}): Promise<void> {
    await this.ping(options);
    const res = await this.#sendRetrying(
      { method: 'GET', url: '/v2/', scopes: [], signal: options.signal },
      (r) => r.status === 200,
    );
    await drain(res.body);
  }

  #pull(repo: string): string[] {
    return [`repository:${repo}:pull`];
  }

  async #sendRetrying(
    req: Parameters<Transport['send']>[0],
    ok: (res: SendResponse) => boolean,
  ): Promise<SendResponse> {
    return this.transport.withRetry(async () => {
      await this.transport.ping(req.signal);
      const res = await this.transport.send(req);
      if (ok(res)) return res;
      throw await errorFromResponse(req.method, res);
    }, req.signal);
  }

  /**
   * headBlob tells whether a blob exists; resolves its descriptor (size from
   * Content-Length) or undefined.
   */
  async headBlob(
    repo: string,
    digest: Digest,
    options: IoOptions = {},
  ): Promise<Descriptor | undefined> {
    const res = await this.#sendRetrying(
      {
        method: 'HEAD',
        url: `/v2/${repo}/blobs/${digest}`,
        scopes: this.#pull(repo),
        signal: options.signal,
        followRedirects: true,
      },
      (r) => r.status === 200 || r.status === 404,
    );
    await drain(res.body);
    if (res.status === 404) return undefined;
    const length = Number(header(res.headers, 'content-length') ?? '-1');
    return { mediaType: 'application/octet-stream', digest, size: length };
  }

  /**
   * blobLocation resolves where a blob really lives: it follows the
   * registry's redirects with HEAD (no data stream, no credentials sent to
   * other hosts) and resolves the final URL.
   * @throws NOT_FOUND, UNAUTHORIZED, NETWORK
   */
  async blobLocation(repo: string, digest: Digest, options: IoOptions = {}): Promise<string> {
    const path = `/v2/${repo}/blobs/${digest}`;
    const head = await this.#sendRetrying(
      {
        method: 'HEAD',
        url: path,
        scopes: this.#pull(repo),
        signal: options.signal,
        followRedirects: true,
      },
      (r) => r.status === 200,
    );
    await drain(head.body);
    if (head.redirected) return head.url.toString();
    // Many registries answer HEAD themselves and redirect only GET: ask with a
    // GET that does not follow, and stop it before any data when it is a 200.
    const get = await this.#sendRetrying(
      { method: 'GET', url: path, scopes: this.#pull(repo), signal: options.signal },
      (r) => r.status === 200 || (r.status >= 300 && r.status < 400),
    );
    const location = header(get.headers, 'location');
    if (get.status === 200) discard(get.body);
    else await drain(get.body);
    if (get.status === 200 || location === undefined) return get.url.toString();
    const target = new URL(location, get.url);
    const res = await this.#sendRetrying(
      { method: 'HEAD', url: target, signal: options.signal, followRedirects: true },
      (r) => r.status < 400,
    );
    await drain(res.body);
    return res.url.toString();
  }

  /**
   * getBlob streams a blob. Redirects (e.g. 307 to object storage) are
   * followed without credentials. A full read is verified against the
   * digest (and `size` when given) while it streams: the stream fails with
   * DIGEST_MISMATCH or SIZE_MISMATCH at the end. Range reads are not verified.
   * @throws NOT_FOUND, UNAUTHORIZED, NETWORK
   */
  async getBlob(repo: string, digest: Digest, options: BlobReadOptions = {}): Promise<Readable> {
    const headers: Record<string, string> = {};
    const range = options.range;
    if (range !== undefined) headers.range = `bytes=${range.start}-${range.end ?? ''}`;
    const res = await this.#sendRetrying(
      {
        method: 'GET',
        url: `/v2/${repo}/blobs/${digest}`,
        headers,
        scopes: this.#pull(repo),
        signal: options.signal,
        followRedirects: true,
      },
      (r) => r.status === 200 || (range !== undefined && r.status === 206),
    );
    if (range !== undefined) {
      if (res.status === 206) return res.body;
      // The server ignored the range: skip to the start ourselves.
      return skipTo(res.body, range.start, range.end);
    }
    const verify = new VerifyingStream({ digest, size: options.size }, `blob ${digest}`);
    const out = new PassThrough();
    pipeline(res.body, verify, out).catch((err: unknown) => {
      out.destroy(err instanceof Error ? err : new Error(String(err)));
    });
    return options.size === undefined ? out : markVerified(out, { digest, size: options.size });
  }

  /** deleteBlob deletes a blob. @throws NOT_FOUND, DENIED, UNSUPPORTED (405) */
  async deleteBlob(repo: string, digest: Digest, options: IoOptions = {}): Promise<void> {
    const res = await this.#sendRetrying(
      {
        method: 'DELETE',
        url: `/v2/${repo}/blobs/${digest}`,
        scopes: [`repository:${repo}:delete`, `repository:${repo}:pull,push`],
        signal: options.signal,
      },
      (r) => r.status === 202 || r.status === 200 || r.status === 204,
    );
    await drain(res.body);
  }

  /**
   * startUpload opens an upload session (`POST /v2/<repo>/blobs/uploads/`).
   * With `mount`, it first asks for a cross-repository mount: resolves
   * `{ mounted: true }` when the registry linked the blob, or a session
   * when it declined (202).
   * @throws UNAUTHORIZED, DENIED (no push permission), NETWORK
   */
  async startUpload(
    repo: string,
    options: IoOptions & { mount?: { digest: Digest; from: string } } = {},
  ): Promise<UploadSession | { readonly mounted: true }> {
    const url = this.transport.url(`/v2/${repo}/blobs/uploads/`);
    const scopes = [`repository:${repo}:pull,push`];
    if (options.mount !== undefined) {
      url.searchParams.set('mount', options.mount.digest);
      url.searchParams.set('from', options.mount.from);
      scopes.push(`repository:${options.mount.from}:pull`);
    }
    const res = await this.#sendRetrying(
      {
        method: 'POST',
        url,
        headers: { 'content-length': '0' },
        scopes,
        signal: options.signal,
      },
      (r) => r.status === 202 || (options.mount !== undefined && r.status === 201),
    );
    const location = header(res.headers, 'location');
    await drain(res.body);
    if (res.status === 201) return { mounted: true };
    if (location === undefined || location === '') {
      throw new RegistryError({
        method: 'POST',
        url,
        status: res.status,
        message: '202 without a Location',
        temporary: false,
      });
    }
    const min = Number(header(res.headers, 'oci-chunk-min-length') ?? 'NaN');
    return new UploadSession(
      this.transport,
      repo,
      new URL(location, url),
      Number.isFinite(min) && min > 0 ? min : undefined,
    );
  }

  /**
   * openUpload is {@link startUpload} without a mount: always a session.
   */
  async openUpload(repo: string, options: IoOptions = {}): Promise<UploadSession> {
    const s = await this.startUpload(repo, options);
    if (!(s instanceof UploadSession))
      throw new LadingError(ErrorCode.Registry, 'unexpected mount');
    return s;
  }

  /**
   * getManifest reads a manifest (Accept: OCI and Docker types), capped at
   * 4 MiB, and verifies it: against the digest when `reference` is one,
   * else against `Docker-Content-Digest` when the registry sent it.
   * @throws NOT_FOUND, MANIFEST_TOO_LARGE, DIGEST_MISMATCH, UNAUTHORIZED, NETWORK
   */
  async getManifest(
    repo: string,
    reference: string,
    options: IoOptions & { accept?: readonly string[] } = {},
  ): Promise<FetchedManifest> {
    return this.transport.withRetry(async () => {
      await this.transport.ping(options.signal);
      const res = await this.transport.send({
        method: 'GET',
        url: `/v2/${repo}/manifests/${reference}`,
        headers: { accept: (options.accept ?? manifestAccept).join(', ') },
        scopes: this.#pull(repo),
        signal: options.signal,
      });
      if (res.status !== 200) throw await errorFromResponse('GET', res);
      const length = Number(header(res.headers, 'content-length') ?? '0');
      if (length > MANIFEST_SIZE_LIMIT) {
        discard(res.body);
        throw new LadingError(
          ErrorCode.ManifestTooLarge,
          `manifest ${repo}:${reference} is ${length} bytes (limit ${MANIFEST_SIZE_LIMIT})`,
        );
      }
      const bytes = await readCapped(res.body, MANIFEST_SIZE_LIMIT);
      const expected = isDigest(reference)
        ? reference
        : (() => {
            const h = header(res.headers, 'docker-content-digest');
            return h !== undefined && isDigest(h) ? h : undefined;
          })();
      const digest = digestOf(
        bytes,
        expected?.startsWith('sha512:') === true ? 'sha512' : 'sha256',
      );
      if (expected !== undefined && expected !== digest) {
        throw new DigestMismatchError(expected, digest, `manifest ${repo}:${reference}`);
      }
      return {
        bytes,
        mediaType: mediaTypeOf(bytes, header(res.headers, 'content-type')),
        digest,
        size: bytes.length,
      };
    }, options.signal);
  }

  /** headManifest resolves a manifest's descriptor, or undefined when absent. */
  async headManifest(
    repo: string,
    reference: string,
    options: IoOptions = {},
  ): Promise<Descriptor | undefined> {
    const res = await this.#sendRetrying(
      {
        method: 'HEAD',
        url: `/v2/${repo}/manifests/${reference}`,
        headers: { accept: manifestAccept.join(', ') },
        scopes: this.#pull(repo),
        signal: options.signal,
      },
      (r) => r.status === 200 || r.status === 404,
    );
    await drain(res.body);
    if (res.status === 404) return undefined;
    const d = header(res.headers, 'docker-content-digest');
    if (d === undefined || !isDigest(d)) {
      // Some registries omit the digest on HEAD: fall back to a GET.
      const m = await this.getManifest(repo, reference, options);
      return { mediaType: m.mediaType, digest: m.digest, size: m.size };
    }
    return {
      mediaType: header(res.headers, 'content-type')?.split(';')[0] ?? MediaType.OciManifest,
      digest: d,
      size: Number(header(res.headers, 'content-length') ?? '0'),
    };
  }

  /**
   * putManifest stores a manifest under a tag or its digest and resolves
   * its digest (checked against the registry's Docker-Content-Digest).
   * @throws MANIFEST_TOO_LARGE, REGISTRY_ERROR (MANIFEST_BLOB_UNKNOWN, …), DENIED
   */
  async putManifest(
    repo: string,
    reference: string,
    bytes: Uint8Array,
    mediaType: MediaTypeString,
    options: IoOptions = {},
  ): Promise<{ digest: Digest; subject?: string }> {
    if (bytes.length > MANIFEST_SIZE_LIMIT) {
      throw new LadingError(
        ErrorCode.ManifestTooLarge,
        `manifest is ${bytes.length} bytes (limit ${MANIFEST_SIZE_LIMIT})`,
      );
    }
    const digest = digestOf(bytes);
    const res = await this.#sendRetrying(
      {
        method: 'PUT',
        url: `/v2/${repo}/manifests/${reference}`,
        headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
        body: Buffer.from(bytes),
        scopes: [`repository:${repo}:pull,push`],
        signal: options.signal,
      },
      (r) => r.status === 201 || r.status === 200 || r.status === 202,
    );
    const stored = header(res.headers, 'docker-content-digest');
    const subject = header(res.headers, 'oci-subject');
    await drain(res.body);
    if (
      stored !== undefined &&
      isDigest(stored) &&
      stored !== digest &&
      digestHex(stored) !== digestHex(digest)
    ) {
      throw new DigestMismatchError(digest, stored, 'stored manifest');
    }
    return subject === undefined ? { digest } : { digest, subject };
  }

  /** deleteManifest deletes a manifest by digest (or tag where allowed). */
  async deleteManifest(repo: string, reference: string, options: IoOptions = {}): Promise<void> {
    const res = await this.#sendRetrying(
      {
        method: 'DELETE',
        url: `/v2/${repo}/manifests/${reference}`,
        scopes: [`repository:${repo}:delete`, `repository:${repo}:pull,push`],
        signal: options.signal,
      },
      (r) => r.status === 202 || r.status === 200 || r.status === 204,
    );
    await drain(res.body);
  }

  async #paginate<T>(
    first: URL,
    scopes: string[],
    pick: (body: unknown) => T[],
    signal: AbortSignal | undefined,
  ): Promise<T[]> {
    const out: T[] = [];
    let url: URL | undefined = first;
    const origin = this.transport.base.origin;
    const seen = new Set<string>();
    let bytes = 0;
    const bounded = (why: string): LadingError =>
      new LadingError(ErrorCode.Registry, `${first.pathname}: ${why}; giving up`);
    for (let page = 0; url !== undefined; page++) {
      const current: URL = url;
      // A Link back to a page already read would loop forever.
      if (seen.has(current.href))
        throw bounded(`the next-page Link loops back to a page read before`);
      if (page >= PAGINATION_LIMITS.pages)
        throw bounded(`more than ${PAGINATION_LIMITS.pages} pages`);
      seen.add(current.href);
      const res = await this.#sendRetrying(
        { method: 'GET', url: current, scopes, signal },
        (r) => r.status === 200,
      );
      const next = parseLinkNext(res.headers.link);
      const body = await readCapped(res.body, MANIFEST_SIZE_LIMIT);
      bytes += body.length;
      if (bytes > PAGINATION_LIMITS.bytes) {
        throw bounded(`the pages add up to over ${PAGINATION_LIMITS.bytes} bytes`);
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch (err) {
        throw new LadingError(ErrorCode.Registry, `page ${current.pathname} is not JSON`, {
          cause: err,
        });
      }
      const items = pick(parsed);
      if (out.length + items.length > PAGINATION_LIMITS.entries) {
        throw bounded(`more than ${PAGINATION_LIMITS.entries} entries`);
      }
      // One push per item: push(...items) overflows the stack on a huge page.
      for (const item of items) out.push(item);
      url = undefined;
      if (next !== undefined) {
        const candidate = new URL(next, current);
        // Only follow pagination on the registry's own origin.
        if (candidate.origin === origin) url = candidate;
      }
    }
    return out;
  }

  /**
   * listTags lists every tag of a repository, following `Link: rel="next"`
   * pages on the same origin only.
   * @throws NOT_FOUND, UNAUTHORIZED
   */
  async listTags(repo: string, options: IoOptions & { pageSize?: number } = {}): Promise<string[]> {
    const url = this.transport.url(`/v2/${repo}/tags/list`);
    if (options.pageSize !== undefined) url.searchParams.set('n', String(options.pageSize));
    return this.#paginate(
      url,
      this.#pull(repo),
      (b) => {
        const tags = (b as { tags?: unknown }).tags;
        return Array.isArray(tags) ? tags.filter((t): t is string => typeof t === 'string') : [];
      },
      options.signal,
    );
  }

  /** catalog lists the registry's repositories (same-origin pagination). */
  async catalog(options: IoOptions & { pageSize?: number } = {}): Promise<string[]> {
    const url = this.transport.url('/v2/_catalog');
    if (options.pageSize !== undefined) url.searchParams.set('n', String(options.pageSize));
    return this.#paginate(
      url,
      ['registry:catalog:*'],
      (b) => {
        const repos = (b as { repositories?: unknown }).repositories;
        return Array.isArray(repos) ? repos.filter((t): t is string => typeof t === 'string') : [];
      },
      options.signal,
    );
  }

  /**
   * referrers lists manifests whose `subject` is `digest`: the referrers
   * API, or — when the registry answers 404 there — the `sha256-<hex>` tag
   * schema fallback. Filtered by `artifactType` when given.
   * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-referrers
   */
  async referrers(
    repo: string,
    digest: Digest,
    options: IoOptions & { artifactType?: string } = {},
  ): Promise<Descriptor[]> {
    parseDigest(digest);
    const url = this.transport.url(`/v2/${repo}/referrers/${digest}`);
    if (options.artifactType !== undefined)
      url.searchParams.set('artifactType', options.artifactType);
    let found: Descriptor[];
    let filtered = false;
    const res = await this.#sendRetrying(
      {
        method: 'GET',
        url,
        headers: { accept: MediaType.OciIndex },
        scopes: this.#pull(repo),
        signal: options.signal,
      },
      (r) => r.status === 200 || r.status === 404,
    );
    if (res.status === 404) {
      await drain(res.body);
      found = await this.#referrersByTag(repo, digest, options.signal);
    } else {
      filtered = header(res.headers, 'oci-filters-applied')?.includes('artifactType') === true;
      const body = await readCapped(res.body, MANIFEST_SIZE_LIMIT);
      let page: Partial<IndexManifest>;
      try {
        page = JSON.parse(body.toString('utf8')) as Partial<IndexManifest>;
      } catch (err) {
        throw new LadingError(ErrorCode.Registry, `the referrers of ${digest} are not JSON`, {
          cause: err,
        });
      }
      found = Array.isArray(page.manifests) ? [...page.manifests] : [];
      // Follow pages on the same origin.
      const next = parseLinkNext(res.headers.link);
      if (next !== undefined) {
        const nextUrl = new URL(next, url);
        if (nextUrl.origin === this.transport.base.origin) {
          const more = await this.#paginate(
            nextUrl,
            this.#pull(repo),
            (b) => (b as IndexManifest).manifests,
            options.signal,
          );
          for (const d of more) found.push(d);
        }
      }
    }
    if (options.artifactType !== undefined && !filtered) {
      found = found.filter((d) => d.artifactType === options.artifactType);
    }
    return found;
  }

  async #referrersByTag(
    repo: string,
    digest: Digest,
    signal: AbortSignal | undefined,
  ): Promise<Descriptor[]> {
    const tag = `${digest.slice(0, digest.indexOf(':'))}-${digestHex(digest)}`;
    try {
      const m = await this.getManifest(repo, tag, { signal, accept: [MediaType.OciIndex] });
      const index = JSON.parse(m.bytes.toString('utf8')) as IndexManifest;
      return [...index.manifests];
    } catch (err) {
      if (err instanceof LadingError && err.code === ErrorCode.NotFound) return [];
      throw err;
    }
  }
}

async function* skipGen(
  body: Readable,
  start: number,
  end: number | undefined,
): AsyncGenerator<Buffer> {
  let pos = 0;
  for await (const c of body) {
    const b = c as Buffer;
    const from = Math.max(0, start - pos);
    const to = end === undefined ? b.length : Math.min(b.length, end + 1 - pos);
    if (to > from) yield b.subarray(from, to);
    pos += b.length;
    if (end !== undefined && pos > end) break;
  }
}

function skipTo(body: Readable, start: number, end: number | undefined): Readable {
  return Readable.from(skipGen(body, start, end), { objectMode: false });
}
