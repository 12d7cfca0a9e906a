import { createHash, type Hash } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import {
  digestAlgorithm,
  isDigest,
  isLadingError,
  MediaType,
  type Descriptor,
  type Digest,
  type DigestAlgorithm,
} from '@lading/core';
import { Authenticator, type Action, type AccessNeed, type RegistryAuth } from './auth.js';
import { HttpError, SpecErrorCode } from './errors.js';
import {
  contentLength,
  type HashCounter,
  hasBody,
  originOf,
  readCapped,
  send,
  sendError,
  sendJson,
  splitUrl,
} from './internal/http.js';
import { parseManifest, referrerDescriptor } from './internal/manifest.js';
import { WindowCounter, type WindowLimit } from './limits.js';
import { isRepositoryName, isTag } from './names.js';
import { createLimitedServer, guardRequest, resolveHttpLimits, type HttpLimits } from './server.js';
import { UploadSessions } from './sessions.js';
import { memoryStorage } from './storage/memory.js';
import type { CompletionResponse, RegistryStorage, UploadStore } from './storage/types.js';

/** RegistryOptions configure {@link createRegistry}. */
export interface RegistryOptions {
  /** storage defaults to {@link memoryStorage}. */
  readonly storage?: RegistryStorage | undefined;
  /** auth defaults to `{ type: 'none' }`. */
  readonly auth?: RegistryAuth | undefined;
  /** maxManifestSize caps manifest PUTs (default 4 MiB); larger ones get 413. */
  readonly maxManifestSize?: number | undefined;
  /** chunkMinLength is advertised as `OCI-Chunk-Min-Length` (default 0: no minimum). */
  readonly chunkMinLength?: number | undefined;
  /** deleteEnabled allows DELETE of manifests, tags and blobs (default true). */
  readonly deleteEnabled?: boolean | undefined;
  /** maxPageSize caps `n` on tags list and catalog (default 10000). */
  readonly maxPageSize?: number | undefined;
  /**
   * rateLimit answers 429 TOOMANYREQUESTS (with `Retry-After`) once a client
   * address has made `requests` requests within `perSeconds` (default: no limit).
   */
  readonly rateLimit?: { readonly requests: number; readonly perSeconds: number } | undefined;
  /**
   * uploadTimeout cancels upload sessions idle for this many seconds
   * (default 86400; 0 keeps them forever). A timer checks every
   * uploadTimeout/4 (at most every minute), and also expires sessions the
   * store lists ({@link UploadStore.list}) from before a restart.
   */
  readonly uploadTimeout?: number | undefined;
  /**
   * maxUploadSize caps the bytes of one upload session (default 16 GiB;
   * 0: no cap). A body that would pass it gets 413 SIZE_INVALID and the
   * session is dropped.
   */
  readonly maxUploadSize?: number | undefined;
  /**
   * maxUploadBytes caps the bytes all open upload sessions hold together
   * (default: no cap); a body that would pass it gets 429 and its session
   * is dropped. With memory storage this bounds what uploads take of the heap.
   */
  readonly maxUploadBytes?: number | undefined;
  /** maxUploadSessions caps open upload sessions (default 1024; 0: no cap); more get 429. */
  readonly maxUploadSessions?: number | undefined;
  /**
   * maxUploadSessionsPerClient caps the open sessions of one client, the
   * user when authenticated, else the address (default 64; 0: no cap).
   */
  readonly maxUploadSessionsPerClient?: number | undefined;
  /** http sets timeouts and connection limits (see {@link HttpLimits} for defaults). */
  readonly http?: HttpLimits | undefined;
  /**
   * authFailureLimit answers 429 to password checks from an address, or
   * for a user, that failed `count` times in `perSeconds` (default 10 per
   * 60 s; false: no limit).
   */
  readonly authFailureLimit?: WindowLimit | false | undefined;
}

/** ListenOptions say where {@link Registry.listen} binds. */
export interface ListenOptions {
  /** host defaults to 127.0.0.1. */
  readonly host?: string | undefined;
  /** port defaults to 0 (an ephemeral port). */
  readonly port?: number | undefined;
}

/** Registry is a running (or mountable) OCI distribution registry. */
export interface Registry {
  /** handler is a node:http request listener, mountable in any server. */
  readonly handler: (req: IncomingMessage, res: ServerResponse) => void;
  /** listen starts a node:http server with {@link Registry.handler}. */
  listen(options?: ListenOptions): Promise<{ url: string; port: number }>;
  /**
   * close stops the server started by listen (ending keep-alive sockets),
   * the upload expiry timer and the password workers.
   */
  close(): Promise<void>;
}

const defaultMaxManifest = 4 * 1024 * 1024;

interface SessionHash {
  hash: Hash;
  algorithm: DigestAlgorithm;
  size: number;
}

type Route =
  | { kind: 'ping' }
  | { kind: 'catalog' }
  | { kind: 'tags'; name: string }
  | { kind: 'manifest'; name: string; ref: string }
  | { kind: 'uploads'; name: string }
  | { kind: 'upload'; name: string; id: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'referrers'; name: string; digest: string };

// The name group is greedy: a repository may itself contain "blobs" or "manifests".
const routePattern =
  /^\/v2\/(.+)\/(?:(tags\/list)|manifests\/([^/]+)|blobs\/uploads\/?([^/]*)|blobs\/([^/]+)|referrers\/([^/]+))$/;

function route(path: string): Route | undefined {
  if (path === '/v2/' || path === '/v2') return { kind: 'ping' };
  if (path === '/v2/_catalog') return { kind: 'catalog' };
  const m = routePattern.exec(path);
  if (m === null) return undefined;
  const [, name = '', tags, ref, uploadId, blob, referrer] = m;
  if (!isRepositoryName(name))
    throw new HttpError(400, SpecErrorCode.NameInvalid, undefined, { name });
  if (tags !== undefined) return { kind: 'tags', name };
  if (ref !== undefined) return { kind: 'manifest', name, ref };
  if (uploadId !== undefined)
    return uploadId === '' ? { kind: 'uploads', name } : { kind: 'upload', name, id: uploadId };
  if (blob !== undefined) return { kind: 'blob', name, digest: blob };
  if (referrer !== undefined) return { kind: 'referrers', name, digest: referrer };
  return undefined;
}

function parseDigestParam(text: string | null | undefined): Digest {
  if (text === null || text === undefined || !isDigest(text)) {
    throw new HttpError(400, SpecErrorCode.DigestInvalid, 'invalid or unsupported digest', {
      digest: text ?? null,
    });
  }
  return text;
}

function rangeHeader(size: number): string {
  // distribution's convention: an empty upload reports "0-0".
  return `0-${Math.max(0, size - 1)}`;
}

function parseRangeSpec(text: string): { start: number; end: number } | undefined {
  const m = /^(?:bytes[ =])?(\d+)-(\d+)$/.exec(text.trim());
  if (m === null) return undefined;
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) return undefined;
  return { start, end };
}

/**
 * createRegistry builds an OCI distribution-spec v1.1 registry over
 * pluggable storage and auth.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md
 */
export function createRegistry(options: RegistryOptions = {}): Registry {
  const limits = resolveHttpLimits(options.http);
  const impl = new RegistryImpl(options);
  let server: Server | undefined;
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    guardRequest(req, res, limits);
    void impl.handle(req, res);
  };
  return {
    handler,
    listen: async (listenOptions = {}) => {
      if (server !== undefined) throw new Error('registry is already listening');
      const s = createLimitedServer(handler, limits);
      server = s;
      const host = listenOptions.host ?? '127.0.0.1';
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(listenOptions.port ?? 0, host, () => {
          s.off('error', reject);
          resolve();
        });
      });
      const port = (s.address() as AddressInfo).port;
      const h = host.includes(':') ? `[${host}]` : host;
      return { url: `http://${h}:${port}`, port };
    },
    close: async () => {
      const s = server;
      server = undefined;
      if (s !== undefined) {
        await new Promise<void>((resolve) => {
          s.close(() => {
            resolve();
          });
          s.closeAllConnections();
        });
      }
      await impl.close();
    },
  };
}

class RegistryImpl {
  readonly #storage: RegistryStorage;
  readonly #auth: Authenticator;
  readonly #maxManifest: number;
  readonly #chunkMin: number;
  readonly #deleteEnabled: boolean;
  readonly #maxPage: number;
  readonly #hashes = new Map<string, SessionHash>();
  readonly #busy = new Set<string>();
  readonly #requests: WindowCounter | undefined;
  readonly #sessions: UploadSessions;

  constructor(options: RegistryOptions) {
    this.#storage = options.storage ?? memoryStorage();
    this.#auth = new Authenticator(options.auth ?? { type: 'none' }, {
      failureLimit: options.authFailureLimit,
    });
    this.#maxManifest = options.maxManifestSize ?? defaultMaxManifest;
    this.#chunkMin = options.chunkMinLength ?? 0;
    this.#deleteEnabled = options.deleteEnabled ?? true;
    this.#maxPage = options.maxPageSize ?? 10_000;
    const rate = options.rateLimit;
    this.#requests =
      rate === undefined
        ? undefined
        : new WindowCounter({ count: rate.requests, perSeconds: rate.perSeconds });
    this.#sessions = new UploadSessions(
      {
        timeout: options.uploadTimeout,
        maxSize: options.maxUploadSize,
        maxSessions: options.maxUploadSessions,
        maxSessionsPerClient: options.maxUploadSessionsPerClient,
        maxBytes: options.maxUploadBytes,
      },
      this.#storage.uploads,
      (id) => this.#busy.has(id),
      (id) => this.#hashes.delete(id),
    );
    this.#storage.uploads?.bindRegistry?.({
      complete: (id, digest, opts) => this.#completeHook(id, digest, opts?.signal),
    });
    this.#sessions.start();
  }

  async close(): Promise<void> {
    await this.#sessions.close();
    await this.#auth.close();
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      await this.#dispatch(req, res);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) {
        sendError(req, res, err);
        return;
      }
      if (isLadingError(err, 'NOT_FOUND')) {
        sendError(req, res, new HttpError(404, SpecErrorCode.BlobUploadUnknown));
        return;
      }
      if (req.destroyed || res.destroyed) return;
      const message = err instanceof Error ? err.message : String(err);
      sendJson(req, res, 500, { errors: [{ code: 'UNKNOWN', message }] });
    }
  }

  #uploads(): UploadStore {
    const u = this.#storage.uploads;
    if (u === undefined || this.#storage.metadata.linkBlob === undefined) {
      throw new HttpError(405, SpecErrorCode.Unsupported, 'this registry is read-only');
    }
    return u;
  }

  async #authorize(req: IncomingMessage, need: AccessNeed): Promise<string | undefined> {
    return await this.#auth.authorize(req, need);
  }

  #repoNeed(name: string, ...actions: Action[]): AccessNeed {
    return { kind: 'repository', name, actions };
  }

  /** throttle counts requests per client address in fixed windows. */
  #throttle(req: IncomingMessage): void {
    const keys = [req.socket.remoteAddress ?? ''];
    this.#requests?.check(keys);
    this.#requests?.add(keys);
  }

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.#throttle(req);
    const { path, query } = splitUrl(req.url);
    const method = req.method ?? 'GET';
    if (path === '/token' && this.#auth.tokenEndpoint) {
      await this.#auth.handleToken(req, res, query);
      return;
    }
    if (!path.startsWith('/v2')) throw new HttpError(404, SpecErrorCode.Unsupported, 'not found');
    const r = route(path);
    if (r === undefined) {
      throw new HttpError(404, SpecErrorCode.Unsupported, 'no such endpoint', { path });
    }
    const allow = (...methods: string[]): void => {
      if (!methods.includes(method)) {
        throw new HttpError(
          405,
          SpecErrorCode.Unsupported,
          `method ${method} not allowed`,
          undefined,
          {
            Allow: methods.join(', '),
          },
        );
      }
    };
    switch (r.kind) {
      case 'ping':
        allow('GET', 'HEAD');
        await this.#authorize(req, { kind: 'ping' });
        sendJson(req, res, 200, {});
        return;
      case 'catalog':
        allow('GET');
        await this.#catalog(req, res, query, await this.#authorize(req, { kind: 'catalog' }));
        return;
      case 'tags':
        allow('GET');
        await this.#authorize(req, this.#repoNeed(r.name, 'pull'));
        await this.#tags(req, res, r.name, query);
        return;
      case 'referrers':
        allow('GET');
        await this.#authorize(req, this.#repoNeed(r.name, 'pull'));
        await this.#referrers(req, res, r.name, r.digest, query);
        return;
      case 'blob':
        allow('GET', 'HEAD', 'DELETE');
        if (method === 'DELETE') {
          await this.#authorize(req, this.#repoNeed(r.name, 'delete'));
          await this.#deleteBlob(req, res, r.name, r.digest);
        } else {
          await this.#authorize(req, this.#repoNeed(r.name, 'pull'));
          await this.#getBlob(req, res, r.name, r.digest);
        }
        return;
      case 'uploads':
        allow('POST');
        await this.#startUpload(
          req,
          res,
          r.name,
          query,
          await this.#authorize(req, this.#repoNeed(r.name, 'pull', 'push')),
        );
        return;
      case 'upload':
        allow('GET', 'PATCH', 'PUT', 'DELETE');
        await this.#authorize(req, this.#repoNeed(r.name, 'pull', 'push'));
        if (method === 'GET') await this.#uploadStatus(req, res, r.name, r.id);
        else if (method === 'PATCH') await this.#patchUpload(req, res, r.name, r.id);
        else if (method === 'PUT') await this.#putUpload(req, res, r.name, r.id, query);
        else await this.#cancelUpload(req, res, r.name, r.id);
        return;
      case 'manifest':
        allow('GET', 'HEAD', 'PUT', 'DELETE');
        if (method === 'PUT') {
          await this.#authorize(req, this.#repoNeed(r.name, 'pull', 'push'));
          await this.#putManifest(req, res, r.name, r.ref, query);
        } else if (method === 'DELETE') {
          await this.#authorize(req, this.#repoNeed(r.name, 'delete'));
          await this.#deleteManifest(req, res, r.name, r.ref);
        } else {
          await this.#authorize(req, this.#repoNeed(r.name, 'pull'));
          await this.#getManifest(req, res, r.name, r.ref);
        }
        return;
    }
  }

  // ---- content discovery -------------------------------------------------

  #paginate(
    items: string[],
    query: URLSearchParams,
    path: string,
  ): { page: string[]; link?: string } {
    const nText = query.get('n');
    const last = query.get('last');
    let list = last === null ? items : items.filter((t) => t > last);
    if (nText === null) return { page: list };
    if (!/^\d+$/.test(nText)) {
      throw new HttpError(400, SpecErrorCode.Unsupported, 'n must be a non-negative integer', {
        n: nText,
      });
    }
    const n = Math.min(Number(nText), this.#maxPage);
    if (n === 0) return { page: [] };
    const more = list.length > n;
    list = list.slice(0, n);
    const lastItem = list[list.length - 1];
    if (!more || lastItem === undefined) return { page: list };
    const next = new URLSearchParams({ n: String(n), last: lastItem });
    return { page: list, link: `<${path}?${next.toString()}>; rel="next"` };
  }

  /** catalog lists the repositories `user` may pull. */
  async #catalog(
    req: IncomingMessage,
    res: ServerResponse,
    query: URLSearchParams,
    user: string | undefined,
  ): Promise<void> {
    const all = await this.#storage.metadata.listRepositories();
    const repos = all.filter((r) => this.#auth.allowed(user, r).includes('pull'));
    const { page, link } = this.#paginate(repos, query, '/v2/_catalog');
    sendJson(req, res, 200, { repositories: page }, link === undefined ? {} : { Link: link });
  }

  async #tags(
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    query: URLSearchParams,
  ): Promise<void> {
    const meta = this.#storage.metadata;
    if (!(await meta.repositoryExists(name))) {
      throw new HttpError(404, SpecErrorCode.NameUnknown, undefined, { name });
    }
    const tags = await meta.listTags(name);
    const { page, link } = this.#paginate(tags, query, `/v2/${name}/tags/list`);
    sendJson(req, res, 200, { name, tags: page }, link === undefined ? {} : { Link: link });
  }

  async #referrers(
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    digestText: string,
    query: URLSearchParams,
  ): Promise<void> {
    const subject = parseDigestParam(digestText);
    let list = await this.#storage.metadata.referrers(name, subject);
    const headers: Record<string, string> = { 'Content-Type': MediaType.OciIndex };
    const artifactType = query.get('artifactType');
    if (artifactType !== null) {
      list = list.filter((d) => d.artifactType === artifactType);
      headers['OCI-Filters-Applied'] = 'artifactType';
    }
    list = [...list].sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
    const body = JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: list,
    });
    send(req, res, 200, headers, body);
  }

  // ---- blobs ---------------------------------------------------------------

  async #visibleBlobSize(name: string, digest: Digest): Promise<number | undefined> {
    if (!(await this.#storage.metadata.hasBlob(name, digest))) return undefined;
    return (await this.#storage.blobs.stat(digest))?.size;
  }

  async #getBlob(
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    digestText: string,
  ): Promise<void> {
    const digest = parseDigestParam(digestText);
    const size = await this.#visibleBlobSize(name, digest);
    if (size === undefined)
      throw new HttpError(404, SpecErrorCode.BlobUnknown, undefined, { digest });
    const headers: Record<string, string | number> = {
      'Docker-Content-Digest': digest,
      'Content-Type': 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      ETag: `"${digest}"`,
    };
    if (req.method === 'HEAD') {
      send(req, res, 200, { ...headers, 'Content-Length': size });
      return;
    }
    const location = await this.#storage.blobs.location?.(digest);
    if (location !== undefined) {
      send(req, res, 307, { 'Docker-Content-Digest': digest, Location: location });
      return;
    }
    let start = 0;
    let end = size - 1;
    let status = 200;
    const range = req.headers.range;
    if (range !== undefined) {
      const parsed = this.#parseByteRange(range, size);
      if (parsed === 'unsatisfiable') {
        send(req, res, 416, { 'Content-Range': `bytes */${size}` });
        return;
      }
      if (parsed !== undefined) {
        ({ start, end } = parsed);
        status = 206;
        headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
      }
    }
    const length = size === 0 ? 0 : end - start + 1;
    const stream = length === 0 ? undefined : await this.#storage.blobs.get(digest, { start, end });
    if (length > 0 && stream === undefined) {
      throw new HttpError(404, SpecErrorCode.BlobUnknown, undefined, { digest });
    }
    res.writeHead(status, {
      'Docker-Distribution-API-Version': 'registry/2.0',
      ...headers,
      'Content-Length': length,
    });
    if (stream === undefined) {
      res.end();
      return;
    }
    try {
      await pipeline(stream, res);
    } catch {
      res.destroy();
    }
  }

  #parseByteRange(
    header: string,
    size: number,
  ): { start: number; end: number } | 'unsatisfiable' | undefined {
    const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
    if (m === null) return undefined; // multiple or odd ranges: serve the whole blob
    const [, a = '', b = ''] = m;
    if (a === '' && b === '') return undefined;
    if (a === '') {
      const suffix = Number(b);
      if (suffix === 0 || size === 0) return 'unsatisfiable';
      return { start: Math.max(0, size - suffix), end: size - 1 };
    }
    const start = Number(a);
    const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
    if (start >= size || end < start) return 'unsatisfiable';
    return { start, end };
  }

  async #deleteBlob(
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    digestText: string,
  ): Promise<void> {
    const meta = this.#storage.metadata;
    if (!this.#deleteEnabled || meta.unlinkBlob === undefined) {
      throw new HttpError(405, SpecErrorCode.Unsupported, 'blob deletion is disabled');
    }
    const digest = parseDigestParam(digestText);
    if (!(await meta.unlinkBlob(name, digest))) {
      throw new HttpError(404, SpecErrorCode.BlobUnknown, undefined, { digest });
    }
    send(req, res, 202, { 'Docker-Content-Digest': digest });
  }

  // ---- uploads -------------------------------------------------------------

  #uploadHeaders(name: string, id: string, size: number): Record<string, string> {
    return {
      Location: `/v2/${name}/blobs/uploads/${id}`,
      Range: rangeHeader(size),
      'Docker-Upload-UUID': id,
    };
  }

  async #startUpload(
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    query: URLSearchParams,
    user: string | undefined,
  ): Promise<void> {
    const uploads = this.#uploads();
    const meta = this.#storage.metadata;
    const owner = user === undefined ? `addr:${req.socket.remoteAddress ?? ''}` : `user:${user}`;
    const mount = query.get('mount');
    const from = query.get('from');
    if (mount !== null) {
      const digest = parseDigestParam(mount);
      if (from !== null && isRepositoryName(from) && (await this.#mayPull(req, from))) {
        if ((await this.#visibleBlobSize(from, digest)) !== undefined) {
          await meta.linkBlob?.(name, digest);
          req.resume();
          send(req, res, 201, {
            Location: `/v2/${name}/blobs/${digest}`,
            'Docker-Content-Digest': digest,
          });
          return;
        }
      }
      // Not mountable: fall back to an ordinary session (spec: 202).
    }
    const algorithmParam = query.get('digest-algorithm');
    if (algorithmParam !== null && algorithmParam !== 'sha256' && algorithmParam !== 'sha512') {
      throw new HttpError(400, SpecErrorCode.DigestInvalid, 'unsupported digest algorithm', {
        algorithm: algorithmParam,
      });
    }
    const digestParam = query.get('digest');
    if (digestParam !== null && mount === null && hasBody(req)) {
      // Single-POST monolithic upload.
      const digest = parseDigestParam(digestParam);
      const declared = contentLength(req);
      this.#sessions.admit(owner);
      const session = await uploads.create(name);
      this.#sessions.opened(session.id, owner);
      try {
        await this.#append(uploads, session.id, 0, req, declared, digestAlgorithm(digest));
        await this.#commit(uploads, name, session.id, digest, declared);
      } catch (err) {
        await uploads.cancel(session.id).catch(() => undefined);
        this.#forget(session.id);
        throw err;
      }
      send(req, res, 201, {
        Location: `/v2/${name}/blobs/${digest}`,
        'Docker-Content-Digest': digest,
      });
      return;
    }
    req.resume();
    this.#sessions.admit(owner);
    const session = await uploads.create(name, { origin: originOf(req) });
    this.#sessions.opened(session.id, owner);
    const algorithm: DigestAlgorithm = algorithmParam === 'sha512' ? 'sha512' : 'sha256';
    this.#hashes.set(session.id, { hash: createHash(algorithm), algorithm, size: 0 });
    const headers = this.#uploadHeaders(name, session.id, 0);
    if (session.location !== undefined) headers.Location = session.location;
    headers['OCI-Chunk-Min-Length'] = String(this.#chunkMin);
    send(req, res, 202, headers);
  }

  async #mayPull(req: IncomingMessage, repository: string): Promise<boolean> {
    try {
      await this.#auth.authorize(req, this.#repoNeed(repository, 'pull'));
      return true;
    } catch {
      return false;
    }
  }

  async #session(uploads: UploadStore, name: string, id: string): Promise<number> {
    const status = await uploads.status(id).catch(() => undefined);
    if (status?.repository !== name) {
      throw new HttpError(404, SpecErrorCode.BlobUploadUnknown, undefined, { uuid: id });
    }
    this.#sessions.touch(id, status.size);
    return status.size;
  }

  /** drop cancels a session (freeing what it holds) and forgets it. */
  async #drop(uploads: UploadStore, id: string): Promise<void> {
    this.#forget(id);
    await uploads.cancel(id).catch(() => undefined);
  }

  #forget(id: string): void {
    this.#hashes.delete(id);
    this.#sessions.forget(id);
  }

  /**
   * append streams `body` into the session at `offset`, hashing as it goes
   * when the session's hash covers exactly the bytes before `offset`.
   */
  async #append(
    uploads: UploadStore,
    id: string,
    offset: number,
    body: IncomingMessage,
    expected: number | undefined,
    algorithm: DigestAlgorithm = 'sha256',
  ): Promise<number> {
    let state = this.#hashes.get(id);
    if (state === undefined && offset === 0) {
      state = { hash: createHash(algorithm), algorithm, size: 0 };
      this.#hashes.set(id, state);
    }
    if (state !== undefined && state.size !== offset) {
      this.#hashes.delete(id);
      state = undefined;
    }
    let counter: HashCounter;
    try {
      counter = this.#sessions.counter(id, offset, expected, state?.hash);
    } catch (err) {
      await this.#drop(uploads, id);
      throw err;
    }
    let size: number;
    try {
      const [appended, piped] = await Promise.allSettled([
        uploads.append(id, offset, counter),
        pipeline(body, counter),
      ]);
      if (piped.status === 'rejected' && piped.reason instanceof HttpError) throw piped.reason;
      if (appended.status === 'rejected') throw appended.reason;
      if (piped.status === 'rejected') throw piped.reason;
      size = appended.value;
      this.#sessions.touch(id, size);
    } catch (err) {
      this.#hashes.delete(id);
      if (this.#sessions.dropsSession(err)) {
        await this.#drop(uploads, id);
      } else {
        // Count what the store kept, not what passed the counter.
        const now = await uploads.status(id).catch(() => undefined);
        if (now !== undefined) this.#sessions.touch(id, now.size);
      }
      if (err instanceof HttpError) throw err;
      if (isLadingError(err, 'CONFLICT')) {
        const now = await uploads.status(id).catch(() => undefined);
        throw new HttpError(
          416,
          SpecErrorCode.BlobUploadInvalid,
          'upload offset changed',
          undefined,
          {
            Range: rangeHeader(now?.size ?? 0),
          },
        );
      }
      throw new HttpError(400, SpecErrorCode.BlobUploadInvalid, 'the request body failed', {
        reason: err instanceof Error ? err.message : String(err),
      });
    }
    if (expected !== undefined && counter.count !== expected) {
      this.#hashes.delete(id);
      throw new HttpError(400, SpecErrorCode.SizeInvalid, 'body shorter than declared', {
        declared: expected,
        received: counter.count,
      });
    }
    if (state !== undefined) {
      if (size === offset + counter.count) state.size = size;
      else this.#hashes.delete(id);
    }
    return size;
  }

  async #withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    if (this.#busy.has(id)) {
      throw new HttpError(
        400,
        SpecErrorCode.BlobUploadInvalid,
        'another request is writing this upload',
        {
          uuid: id,
        },
      );
    }
    this.#busy.add(id);
    try {
      return await fn();
    } finally {
      this.#busy.delete(id);
    }
  }

  /**
   * chunkLength reads the lengths a PATCH or PUT body declares for the
   * session `id` of `name`, now `size` bytes long: `declared` from
   * Content-Length, `ranged` from Content-Range once the range is checked to
   * start at `size`.
   * @throws 400 BLOB_UPLOAD_INVALID on a malformed Content-Range; 416 with the session's Range when it starts elsewhere
   */
  #chunkLength(
    req: IncomingMessage,
    name: string,
    id: string,
    size: number,
  ): { declared: number | undefined; ranged: number | undefined } {
    const declared = contentLength(req);
    const header = req.headers['content-range'];
    if (header === undefined) return { declared, ranged: undefined };
    const range = parseRangeSpec(header);
    if (range === undefined) {
      throw new HttpError(400, SpecErrorCode.BlobUploadInvalid, 'malformed Content-Range', {
        contentRange: header,
      });
    }
    if (range.start !== size) {
      throw new HttpError(
        416,
        SpecErrorCode.BlobUploadInvalid,
        'chunk out of order',
        {
          offset: size,
        },
        this.#uploadHeaders(name, id, size),
      );
    }
    return { declared, ranged: range.end - range.start + 1 };
  }

  async #patchUpload(
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    id: string,
  ): Promise<void> {
    const uploads = this.#uploads();
    await this.#withLock(id, async () => {
      const size = await this.#session(uploads, name, id);
      const { declared, ranged } = this.#chunkLength(req, name, id, size);
      if (ranged !== undefined && declared !== undefined && declared !== ranged) {
        throw new HttpError(
          400,
          SpecErrorCode.SizeInvalid,
          'Content-Length does not match Content-Range',
          {
            contentLength: declared,
            range: ranged,
          },
        );
      }
      const newSize = await this.#append(uploads, id, size, req, ranged ?? declared);
      send(req, res, 202, this.#uploadHeaders(name, id, newSize));
    });
  }

  async #putUpload(
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    id: string,
    query: URLSearchParams,
  ): Promise<void> {
    const uploads = this.#uploads();
    await this.#withLock(id, async () => {
      let size = await this.#session(uploads, name, id);
      const digest = parseDigestParam(query.get('digest'));
      if (hasBody(req)) {
        const { declared, ranged } = this.#chunkLength(req, name, id, size);
        const algorithm = digestAlgorithm(digest);
        size = await this.#append(uploads, id, size, req, ranged ?? declared, algorithm);
      }
      await this.#commit(uploads, name, id, digest, undefined);
      send(req, res, 201, {
        Location: `/v2/${name}/blobs/${digest}`,
        'Docker-Content-Digest': digest,
      });
    });
  }

  /** commit verifies the session's bytes against `digest` and makes the blob visible in `name`. */
  async #commit(
    uploads: UploadStore,
    name: string,
    id: string,
    digest: Digest,
    expectedSize: number | undefined,
  ): Promise<void> {
    const status = await uploads.status(id);
    if (status === undefined) throw new HttpError(404, SpecErrorCode.BlobUploadUnknown);
    if (expectedSize !== undefined && status.size !== expectedSize) {
      throw new HttpError(400, SpecErrorCode.SizeInvalid, undefined, {
        declared: expectedSize,
        received: status.size,
      });
    }
    const algorithm = digestAlgorithm(digest);
    const state = this.#hashes.get(id);
    let actual: string;
    if (state?.algorithm === algorithm && state.size === status.size) {
      actual = `${algorithm}:${state.hash.copy().digest('hex')}`;
    } else {
      // After a restart, a failed chunk or an external upload: hash what the store holds.
      const hash = createHash(algorithm);
      let seen = 0;
      for await (const chunk of await uploads.read(id)) {
        const b = chunk as Buffer;
        seen += b.length;
        hash.update(b);
      }
      if (seen !== status.size) {
        throw new HttpError(400, SpecErrorCode.SizeInvalid, 'stored upload size changed');
      }
      actual = `${algorithm}:${hash.digest('hex')}`;
    }
    if (actual !== digest) {
      await uploads.cancel(id).catch(() => undefined);
      this.#forget(id);
      throw new HttpError(400, SpecErrorCode.DigestInvalid, undefined, {
        expected: digest,
        actual,
      });
    }
    await uploads.commit(id, digest);
    this.#forget(id);
    await this.#storage.metadata.linkBlob?.(name, digest);
  }

  async #completeHook(
    id: string,
    digestText: string,
    signal?: AbortSignal,
  ): Promise<CompletionResponse> {
    try {
      signal?.throwIfAborted();
      const uploads = this.#uploads();
      const digest = parseDigestParam(digestText);
      const status = await uploads.status(id);
      if (status === undefined) throw new HttpError(404, SpecErrorCode.BlobUploadUnknown);
      return await this.#withLock(id, async () => {
        await this.#commit(uploads, status.repository, id, digest, undefined);
        return {
          status: 201,
          headers: {
            Location: `/v2/${status.repository}/blobs/${digest}`,
            'Docker-Content-Digest': digest,
          },
          body: '',
        };
      });
    } catch (err) {
      if (err instanceof HttpError) {
        return {
          status: err.status,
          headers: { 'Content-Type': 'application/json', ...err.headers },
          body: err.body(),
        };
      }
      throw err;
    }
  }

  async #uploadStatus(
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    id: string,
  ): Promise<void> {
    const uploads = this.#uploads();
    const size = await this.#session(uploads, name, id);
    send(req, res, 204, this.#uploadHeaders(name, id, size));
  }

  async #cancelUpload(
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    id: string,
  ): Promise<void> {
    const uploads = this.#uploads();
    await this.#session(uploads, name, id);
    if (this.#busy.has(id)) {
      throw new HttpError(400, SpecErrorCode.BlobUploadInvalid, 'upload is being written');
    }
    await uploads.cancel(id);
    this.#forget(id);
    send(req, res, 204, {});
  }

  // ---- manifests -----------------------------------------------------------

  async #resolve(name: string, ref: string): Promise<Digest> {
    const meta = this.#storage.metadata;
    let digest: Digest | undefined;
    if (ref.includes(':')) digest = parseDigestParam(ref);
    else if (isTag(ref)) digest = await meta.resolveTag(name, ref);
    if (digest === undefined) throw this.#manifestUnknown(name, ref);
    return digest;
  }

  // MANIFEST_UNKNOWN even for an unknown repository, as CNCF distribution
  // answers (clients map it to "not found"; tags/list says NAME_UNKNOWN).
  #manifestUnknown(name: string, ref: string): HttpError {
    return new HttpError(404, SpecErrorCode.ManifestUnknown, undefined, { name, reference: ref });
  }

  async #getManifest(
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    ref: string,
  ): Promise<void> {
    const digest = await this.#resolve(name, ref);
    const m = await this.#storage.metadata.getManifest(name, digest);
    if (m === undefined) throw this.#manifestUnknown(name, ref);
    send(
      req,
      res,
      200,
      {
        'Content-Type': m.mediaType,
        'Docker-Content-Digest': digest,
        'Content-Length': m.bytes.length,
        ETag: `"${digest}"`,
      },
      m.bytes,
    );
  }

  async #putManifest(
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    ref: string,
    query: URLSearchParams,
  ): Promise<void> {
    const meta = this.#storage.metadata;
    if (meta.putManifest === undefined || meta.putTag === undefined) {
      throw new HttpError(405, SpecErrorCode.Unsupported, 'this registry is read-only');
    }
    const byDigest = ref.includes(':');
    const refDigest = byDigest ? parseDigestParam(ref) : undefined;
    if (!byDigest && !isTag(ref)) {
      throw new HttpError(400, SpecErrorCode.ManifestInvalid, 'invalid tag', { tag: ref });
    }
    const extraTags = byDigest ? query.getAll('tag') : [];
    for (const t of extraTags) {
      if (!isTag(t))
        throw new HttpError(400, SpecErrorCode.ManifestInvalid, 'invalid tag', { tag: t });
    }
    const tooLarge = (): HttpError =>
      new HttpError(413, SpecErrorCode.ManifestInvalid, 'manifest too large', {
        limit: this.#maxManifest,
      });
    const declared = contentLength(req);
    if (declared !== undefined && declared > this.#maxManifest) throw tooLarge();
    const bytes = await readCapped(req, this.#maxManifest, tooLarge);
    if (declared !== undefined && bytes.length !== declared) {
      throw new HttpError(400, SpecErrorCode.SizeInvalid, 'body shorter than declared');
    }
    const parsed = parseManifest(bytes, req.headers['content-type']);
    const algorithm = refDigest === undefined ? 'sha256' : digestAlgorithm(refDigest);
    const digest = `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}` as Digest;
    if (refDigest !== undefined && refDigest !== digest) {
      throw new HttpError(400, SpecErrorCode.DigestInvalid, 'manifest digest does not match', {
        expected: refDigest,
        actual: digest,
      });
    }
    await this.#checkReferences(name, parsed.blobs, parsed.children);
    await meta.putManifest(name, {
      digest,
      bytes,
      mediaType: parsed.mediaType,
      subject: parsed.subject?.digest,
      referrer: referrerDescriptor(parsed, digest, bytes.length),
    });
    if (!byDigest) await meta.putTag(name, ref, digest);
    for (const t of extraTags) await meta.putTag(name, t, digest);
    const headers: Record<string, string | string[]> = {
      Location: `/v2/${name}/manifests/${digest}`,
      'Docker-Content-Digest': digest,
    };
    if (parsed.subject !== undefined) headers['OCI-Subject'] = parsed.subject.digest;
    if (extraTags.length > 0) headers['OCI-Tag'] = extraTags;
    send(req, res, 201, headers);
  }

  async #checkReferences(name: string, blobs: Descriptor[], children: Descriptor[]): Promise<void> {
    const missing: Digest[] = [];
    for (const d of blobs) {
      const size = await this.#visibleBlobSize(name, d.digest);
      if (size === undefined) missing.push(d.digest);
      else if (size !== d.size) {
        throw new HttpError(
          400,
          SpecErrorCode.ManifestInvalid,
          'descriptor size does not match the blob',
          {
            digest: d.digest,
            declared: d.size,
            actual: size,
          },
        );
      }
    }
    for (const d of children) {
      const m = await this.#storage.metadata.getManifest(name, d.digest);
      if (m === undefined) missing.push(d.digest);
      else if (m.bytes.length !== d.size) {
        throw new HttpError(
          400,
          SpecErrorCode.ManifestInvalid,
          'descriptor size does not match the manifest',
          {
            digest: d.digest,
            declared: d.size,
            actual: m.bytes.length,
          },
        );
      }
    }
    if (missing.length > 0) {
      throw new HttpError(400, SpecErrorCode.ManifestBlobUnknown, undefined, {
        digest: missing[0],
        missing,
      });
    }
  }

  async #deleteManifest(
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    ref: string,
  ): Promise<void> {
    const meta = this.#storage.metadata;
    if (!this.#deleteEnabled || meta.deleteManifest === undefined || meta.deleteTag === undefined) {
      throw new HttpError(405, SpecErrorCode.Unsupported, 'deletion is disabled');
    }
    let ok: boolean;
    if (ref.includes(':')) ok = await meta.deleteManifest(name, parseDigestParam(ref));
    else ok = isTag(ref) && (await meta.deleteTag(name, ref));
    if (!ok) throw this.#manifestUnknown(name, ref);
    send(req, res, 202, {});
  }
}
