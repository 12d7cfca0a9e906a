// RegistryClient is one class with one method per distribution-spec endpoint
// (~460 lines): splitting it would scatter the API that users read in one
// place; listing, manifest reading and blob location already live beside it.
import type { Readable } from 'node:stream';
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
  type Descriptor,
  type Digest,
  type IndexManifest,
  type IoOptions,
  type MediaTypeString,
} from '@lading/core';
import { manifestAccept, markVerified, referrersTag } from '@lading/core/internal';
import { RegistryError } from './errors.js';
import type { Transport } from './internal/transport/index.js';
import {
  drain,
  errorFromResponse,
  header,
  type TransportOptions,
} from './internal/transport/index.js';
import { listReferrers, paginate, strings } from './listing.js';
import { readManifest, type FetchedManifest } from './internal/manifest.js';
import { feedResuming, followBlob, skipTo } from './internal/blob-read.js';
import { sessionOf, type RemoteSession } from './session.js';
import { BlobUpload } from './upload.js';

export type { FetchedManifest };

/** MANIFEST_SIZE_LIMIT is the largest manifest lading reads or writes (4 MiB). */
export const MANIFEST_SIZE_LIMIT = MAX_MANIFEST_SIZE;

/**
 * RemoteOptions configure every registry call: credentials, transport and
 * retries. Stored credentials (docker/podman config files, credential
 * helpers) are used unless `auth` is given or `useStoredCredentials` is false.
 */
export interface RemoteOptions extends TransportOptions, IoOptions {
  /**
   * session shares credentials, pings, tokens and connections with other
   * calls given the same session; without one, each call builds its own
   * from these options. See {@link RemoteSession}.
   */
  readonly session?: RemoteSession | undefined;
}

/** GetBlobOptions configure {@link RegistryClient.getBlob}. */
export interface GetBlobOptions extends IoOptions {
  /** size, when known, is verified along with the digest. */
  readonly size?: number;
  /** range reads bytes [start, end] (inclusive) and skips verification. */
  readonly range?: { readonly start: number; readonly end?: number };
}

/**
 * BlobReadOptions is the former name of {@link GetBlobOptions}.
 * @deprecated Use GetBlobOptions (@lading/registry's BlobReadOptions is a storage type).
 */
export type BlobReadOptions = GetBlobOptions;

/**
 * RegistryClient is the distribution client: one method per endpoint of the
 * distribution spec for one registry host (ping, blob HEAD/GET/DELETE,
 * upload sessions and mounts, manifest GET/HEAD/PUT/DELETE, tags, catalog,
 * referrers), with no knowledge of images or layers. The verbs
 * ({@link write}, {@link pull}, {@link registryTarget}) are built on it; call
 * it directly to do what they do not, for example after
 * {@link checkPushPermission}: `openUpload(repo)`, `session.upload(stream)`,
 * `putManifest(repo, tag, bytes, mediaType)`.
 *
 * Every method takes `{ signal }`; reads are verified against digests and
 * sizes; requests are retried as whole sequences on temporary failures.
 * Clients given the same `session` share its ping and tokens; a client
 * built without one has its own.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md
 */
export class RegistryClient {
  /** registry is the host (and port) as written in references. */
  readonly registry: string;
  /** @internal */
  readonly transport: Transport;
  /** #indexing chains the tag schema updates per repository and subject (see #serialized). */
  readonly #indexing = new Map<string, Promise<void>>();

  constructor(registry: string, options: RemoteOptions = {}) {
    this.registry = registry;
    this.transport = sessionOf(options).transport(registry);
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
    const res = await this.transport.exchange(
      { method: 'GET', url: '/v2/', scopes: [], signal: options.signal },
      (r) => r.status === 200,
    );
    await drain(res.body);
  }

  #pull(repo: string): string[] {
    return [`repository:${repo}:pull`];
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
    const res = await this.transport.exchange(
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
    return followBlob(this.transport, repo, digest, options.signal);
  }

  /**
   * getBlob streams a blob. Redirects (e.g. 307 to object storage) are
   * followed without credentials. A full read is verified against the
   * digest (and `size` when given) while it streams: the stream fails with
   * DIGEST_MISMATCH or SIZE_MISMATCH at the end. Range reads are not verified.
   * @throws NOT_FOUND, UNAUTHORIZED, NETWORK
   */
  async getBlob(repo: string, digest: Digest, options: GetBlobOptions = {}): Promise<Readable> {
    const headers: Record<string, string> = {};
    const range = options.range;
    if (range !== undefined) headers.range = `bytes=${range.start}-${range.end ?? ''}`;
    const res = await this.transport.exchange(
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
    // The verifier is the stream handed out (as a layout's fetch does): a
    // failing body destroys it with the body's error, and destroying it
    // stops the body. No further stage: each one costs every chunk a hop.
    // A connection that drops mid-body is asked again for the rest; when
    // that fails too, the stream fails with a temporary NETWORK error (so
    // copy() fetches the blob again), not undici's own.
    const verify = new VerifyingStream({ digest, size: options.size }, 'blob');
    feedResuming(this.transport, repo, digest, res, verify, options.signal, options.size);
    return options.size === undefined
      ? verify
      : markVerified(verify, { digest, size: options.size });
  }

  /**
   * lendBlob reads a blob of a plain-HTTP registry over a connection of its
   * own and hands its bytes to `take` chunk by chunk, in memory that is read
   * into again once `take`'s promise settles (so a taker that keeps bytes
   * copies them). Nothing is verified: the taker hashes what it takes.
   * Redirects to plain-HTTP locations are followed, credentials sent only
   * to the registry's origin. Resolves false, having taken nothing, when
   * the blob cannot be lent: an https registry or location, a `dispatcher`
   * option, an answer that is not a plain 200 (a challenge, an error, a
   * chunked body); use {@link getBlob} then.
   * @throws ABORTED; once bytes were taken, NETWORK or what `take` threw
   */
  lendBlob(
    repo: string,
    digest: Digest,
    take: (chunk: Buffer) => Promise<void> | void,
    options: IoOptions = {},
  ): Promise<boolean> {
    return this.transport.lend(
      `/v2/${repo}/blobs/${digest}`,
      this.#pull(repo),
      options.signal,
      take,
    );
  }

  /** deleteBlob deletes a blob. @throws NOT_FOUND, DENIED, UNSUPPORTED (405) */
  async deleteBlob(repo: string, digest: Digest, options: IoOptions = {}): Promise<void> {
    const res = await this.transport.exchange(
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
   * openUploadOrMount opens an upload session (`POST /v2/<repo>/blobs/uploads/`).
   * With `mount`, it first asks for a cross-repository mount: resolves
   * `{ mounted: true }` when the registry linked the blob, or a session
   * when it declined (202).
   * @throws UNAUTHORIZED, DENIED (no push permission), NETWORK
   */
  async openUploadOrMount(
    repo: string,
    options: IoOptions & { mount?: { digest: Digest; from: string } } = {},
  ): Promise<BlobUpload | { readonly mounted: true }> {
    const url = this.transport.url(`/v2/${repo}/blobs/uploads/`);
    const scopes = [`repository:${repo}:pull,push`];
    if (options.mount !== undefined) {
      url.searchParams.set('mount', options.mount.digest);
      url.searchParams.set('from', options.mount.from);
      scopes.push(`repository:${options.mount.from}:pull`);
    }
    const res = await this.transport.exchange(
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
    return new BlobUpload(
      this.transport,
      repo,
      new URL(location, url),
      Number.isFinite(min) && min > 0 ? min : undefined,
    );
  }

  /**
   * openUpload is {@link RegistryClient.openUploadOrMount} without a mount: always a session.
   * @throws UNAUTHORIZED, DENIED (no push permission), NETWORK
   */
  async openUpload(repo: string, options: IoOptions = {}): Promise<BlobUpload> {
    const s = await this.openUploadOrMount(repo, options);
    if (!(s instanceof BlobUpload)) throw new LadingError(ErrorCode.Registry, 'unexpected mount');
    return s;
  }
  /**
   * startUpload is the former name of {@link RegistryClient.openUploadOrMount}.
   * @deprecated Use openUploadOrMount; the function `startUpload` opens a session from a reference.
   */
  startUpload(
    repo: string,
    options: IoOptions & { mount?: { digest: Digest; from: string } } = {},
  ): Promise<BlobUpload | { readonly mounted: true }> {
    return this.openUploadOrMount(repo, options);
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
      const req = {
        method: 'GET',
        url: `/v2/${repo}/manifests/${reference}`,
        headers: { accept: (options.accept ?? manifestAccept).join(', ') },
        scopes: this.#pull(repo),
        signal: options.signal,
      };
      const res = await this.transport.send(req, await this.transport.ready(req));
      if (res.status !== 200) throw await errorFromResponse('GET', res);
      return readManifest(
        res,
        `${repo}:${reference}`,
        isDigest(reference) ? reference : undefined,
        options.signal,
      );
    }, options.signal);
  }

  /** headManifest resolves a manifest's descriptor, or undefined when absent. */
  async headManifest(
    repo: string,
    reference: string,
    options: IoOptions = {},
  ): Promise<Descriptor | undefined> {
    const res = await this.transport.exchange(
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
   * its digest (checked against the registry's Docker-Content-Digest). A
   * manifest with a `subject` that the registry does not answer with
   * `OCI-Subject` (it has no referrers API) is added to the subject's
   * `sha256-<hex>` tag schema index, as the distribution spec asks of
   * clients; `subject` in the answer is then absent.
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
    const res = await this.transport.exchange(
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
    if (subject !== undefined) return { digest, subject };
    const referrer = referrerOf(bytes, mediaType, digest);
    if (referrer !== undefined)
      await this.#serialized(repo, referrer.subject, () =>
        this.#addReferrer(repo, referrer.subject, referrer.descriptor, options.signal),
      );
    return { digest };
  }

  /**
   * serialized runs `update` of the tag schema index of `subject` after
   * the updates of it this client has begun: copy() pushes the referrers
   * of one subject side by side, and each rewrites the index.
   */
  async #serialized(repo: string, subject: Digest, update: () => Promise<void>): Promise<void> {
    const key = `${repo}@${subject}`;
    const before = this.#indexing.get(key) ?? Promise.resolve();
    const mine = before.then(update);
    const settled = mine.catch(() => undefined);
    this.#indexing.set(key, settled);
    try {
      await mine;
    } finally {
      if (this.#indexing.get(key) === settled) this.#indexing.delete(key);
    }
  }

  /**
   * addReferrer adds `desc` to the `sha256-<hex>` index of the referrers
   * of `subject` (read, add, write back: two clients indexing referrers of
   * one subject at once may lose one, as with every tag schema client).
   */
  async #addReferrer(
    repo: string,
    subject: Digest,
    desc: Descriptor,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const current = await this.#referrersByTag(repo, subject, signal);
    if (!current.some((d) => d.digest === desc.digest))
      await this.#putFallback(repo, subject, [...current, desc], signal);
  }

  /**
   * deleteManifest deletes a manifest by digest (or tag where allowed). A
   * manifest deleted by digest that has a `subject`, in a registry without
   * the referrers API, is also taken out of its subject's `sha256-<hex>`
   * tag schema index, which is written back without it (an empty index
   * when it was the last), as the distribution spec asks of clients.
   */
  async deleteManifest(repo: string, reference: string, options: IoOptions = {}): Promise<void> {
    const referrer = isDigest(reference)
      ? await this.#referrerIn(repo, reference, options.signal)
      : undefined;
    await this.#deleteManifest(repo, reference, options.signal);
    if (referrer === undefined) return;
    try {
      await this.#serialized(repo, referrer.subject, () =>
        this.#dropReferrer(repo, referrer.subject, reference as Digest, options.signal),
      );
    } catch (err) {
      if (options.signal?.aborted === true || !(err instanceof LadingError)) throw err;
      // Deleted, so a second delete cannot read the subject any more: say
      // what is left to mend.
      throw new LadingError(
        err.code,
        `${reference} was deleted, but the referrers index ${referrersTag(referrer.subject)} still lists it: ${err.message}`,
        { cause: err },
      );
    }
  }

  /** referrerIn reads the manifest `digest` for its subject; undefined when it has none or cannot be read. */
  async #referrerIn(
    repo: string,
    digest: Digest,
    signal: AbortSignal | undefined,
  ): Promise<{ subject: Digest } | undefined> {
    try {
      const m = await this.getManifest(repo, digest, { signal });
      return referrerOf(m.bytes, m.mediaType, digest);
    } catch (err) {
      // The DELETE says what is wrong (NOT_FOUND, DENIED, …).
      if (signal?.aborted === true) throw err;
      return undefined;
    }
  }

  /** dropReferrer takes `digest` out of the tag schema index of `subject`, unless the registry has the referrers API. */
  async #dropReferrer(
    repo: string,
    subject: Digest,
    digest: Digest,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const api = await this.transport.exchange(
      {
        method: 'GET',
        url: `/v2/${repo}/referrers/${subject}`,
        headers: { accept: MediaType.OciIndex },
        scopes: this.#pull(repo),
        signal,
      },
      (r) => r.status === 200 || r.status === 404,
    );
    await drain(api.body);
    if (api.status === 200) return;
    const current = await this.#referrersByTag(repo, subject, signal);
    const kept = current.filter((d) => d.digest !== digest);
    if (kept.length !== current.length) await this.#putFallback(repo, subject, kept, signal);
  }

  /** putFallback puts `manifests` as the tag schema index of the referrers of `subject`. */
  async #putFallback(
    repo: string,
    subject: Digest,
    manifests: Descriptor[],
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const index: IndexManifest = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests };
    await this.putManifest(
      repo,
      referrersTag(subject),
      Buffer.from(JSON.stringify(index)),
      MediaType.OciIndex,
      { signal },
    );
  }

  async #deleteManifest(
    repo: string,
    reference: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const res = await this.transport.exchange(
      {
        method: 'DELETE',
        url: `/v2/${repo}/manifests/${reference}`,
        scopes: [`repository:${repo}:delete`, `repository:${repo}:pull,push`],
        signal,
      },
      (r) => r.status === 202 || r.status === 200 || r.status === 204,
    );
    await drain(res.body);
  }

  /**
   * listTags lists every tag of a repository, following `Link: rel="next"`
   * pages on the same origin only.
   * @throws NOT_FOUND, UNAUTHORIZED
   */
  async listTags(repo: string, options: IoOptions & { pageSize?: number } = {}): Promise<string[]> {
    const first = this.transport.url(`/v2/${repo}/tags/list`);
    if (options.pageSize !== undefined) first.searchParams.set('n', String(options.pageSize));
    const scopes = this.#pull(repo);
    return paginate(this.transport, {
      first,
      scopes,
      pick: strings('tags'),
      signal: options.signal,
    });
  }

  /** catalog lists the registry's repositories (same-origin pagination). */
  async catalog(options: IoOptions & { pageSize?: number } = {}): Promise<string[]> {
    const first = this.transport.url('/v2/_catalog');
    if (options.pageSize !== undefined) first.searchParams.set('n', String(options.pageSize));
    const scopes = ['registry:catalog:*'];
    const pick = strings('repositories');
    return paginate(this.transport, { first, scopes, pick, signal: options.signal });
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
    return listReferrers(this.transport, {
      repo,
      digest,
      artifactType: options.artifactType,
      signal: options.signal,
      byTag: () => this.#referrersByTag(repo, digest, options.signal),
    });
  }

  async #referrersByTag(
    repo: string,
    digest: Digest,
    signal: AbortSignal | undefined,
  ): Promise<Descriptor[]> {
    try {
      const m = await this.getManifest(repo, referrersTag(digest), {
        signal,
        accept: [MediaType.OciIndex],
      });
      const index = JSON.parse(m.bytes.toString('utf8')) as IndexManifest;
      return [...index.manifests];
    } catch (err) {
      if (err instanceof LadingError && err.code === ErrorCode.NotFound) return [];
      throw err;
    }
  }
}

/**
 * referrerOf reads the `subject` of an image manifest or index and the
 * descriptor a referrers index lists it with (its `artifactType`, else its
 * config's media type, and its annotations); undefined without a subject.
 */
function referrerOf(
  bytes: Uint8Array,
  mediaType: MediaTypeString,
  digest: Digest,
): { subject: Digest; descriptor: Descriptor } | undefined {
  let m: {
    subject?: { digest?: unknown };
    artifactType?: unknown;
    config?: { mediaType?: unknown };
    annotations?: unknown;
  };
  try {
    m = JSON.parse(Buffer.from(bytes).toString('utf8')) as typeof m;
  } catch {
    return undefined;
  }
  const subject = m.subject?.digest;
  if (typeof subject !== 'string' || !isDigest(subject)) return undefined;
  const artifactType =
    typeof m.artifactType === 'string'
      ? m.artifactType
      : typeof m.config?.mediaType === 'string'
        ? m.config.mediaType
        : undefined;
  const annotations =
    typeof m.annotations === 'object' && m.annotations !== null
      ? (m.annotations as Record<string, string>)
      : undefined;
  return {
    subject,
    descriptor: {
      mediaType,
      digest,
      size: bytes.length,
      ...(artifactType === undefined ? {} : { artifactType }),
      ...(annotations === undefined ? {} : { annotations }),
    },
  };
}
