import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { isDigest, type Digest } from '@lading/core';
import { filesystemStorage } from '../storage/filesystem.js';
import type {
  BlobReadOptions,
  BlobStat,
  BlobStore,
  CompletionResponse,
  MetadataStore,
  RegistryHooks,
  RegistryStorage,
  StorageOptions,
  UploadCreateOptions,
  UploadSession,
  UploadStatus,
  UploadStore,
} from '../storage/types.js';

/** HttpObjectStorageOptions configure {@link httpObjectStorage}. */
export interface HttpObjectStorageOptions {
  /** dir holds the objects (blobs and in-progress uploads). */
  readonly dir: string;
  /** metadata holds manifests and tags (default: filesystem metadata in `dir`). */
  readonly metadata?: MetadataStore | undefined;
  /** secret signs URLs (default: random per instance). */
  readonly secret?: string | undefined;
  /** expiresIn is the signed URL lifetime in seconds (default 300). */
  readonly expiresIn?: number | undefined;
  /** host is where the object server listens (default 127.0.0.1). */
  readonly host?: string | undefined;
}

/** ObjectRequestLog records what reached the object server (for tests and demos). */
export interface ObjectRequestLog {
  readonly method: string;
  readonly path: string;
  readonly authorization: boolean;
}

/**
 * HttpObjectStorage is a stand-in for object storage with pre-signed URLs:
 * a second node:http server that serves `/blobs/<digest>?exp=…&sig=…` and
 * accepts uploads at `/uploads/<id>?…&sig=…`. Its {@link storage} makes the
 * registry answer blob GETs with 307 redirects and hand out upload
 * locations on the object server's origin.
 */
export interface HttpObjectStorage {
  readonly storage: RegistryStorage;
  /** url is the object server's origin once {@link start} resolved. */
  readonly url: string;
  /** requests lists every request the object server received. */
  readonly requests: readonly ObjectRequestLog[];
  start(): Promise<string>;
  close(): Promise<void>;
}

function sign(secret: string, parts: readonly string[]): string {
  return createHmac('sha256', secret).update(parts.join('\n')).digest('base64url');
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function reply(
  res: ServerResponse,
  status: number,
  headers: Record<string, string | number> = {},
  body = '',
): void {
  res.writeHead(status, { 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/**
 * httpObjectStorage builds the example object storage over `dir`. Call
 * `start()` before serving requests.
 */
export function httpObjectStorage(options: HttpObjectStorageOptions): HttpObjectStorage {
  const backing = filesystemStorage(options.dir);
  // A CSPRNG secret: Math.random() is predictable from a few outputs.
  const secret = options.secret ?? randomBytes(32).toString('hex');
  const ttl = options.expiresIn ?? 300;
  const requests: ObjectRequestLog[] = [];
  let origin = '';
  let server: Server | undefined;
  let hooks: RegistryHooks | undefined;
  const backingUploads = backing.uploads;
  if (backingUploads === undefined) throw new Error('unreachable: filesystem storage has uploads');

  const signed = (path: string, extra: Record<string, string> = {}): string => {
    const exp = String(Math.floor(Date.now() / 1000) + ttl);
    const params = new URLSearchParams({ ...extra, exp });
    params.set('sig', sign(secret, [path, exp, extra.ret ?? '']));
    return `${origin}${path}?${params.toString()}`;
  };

  const blobs: BlobStore = {
    stat: (digest: Digest, o?: StorageOptions): Promise<BlobStat | undefined> =>
      backing.blobs.stat(digest, o),
    get: (digest: Digest, o?: BlobReadOptions) => backing.blobs.get(digest, o),
    location: (digest: Digest) => Promise.resolve(signed(`/blobs/${digest}`)),
  };

  const uploads: UploadStore = {
    async create(repository: string, o?: UploadCreateOptions): Promise<UploadSession> {
      const session = await backingUploads.create(repository, o);
      if (o?.origin === undefined) return session;
      const ret = `${o.origin}/v2/${repository}/blobs/uploads/${session.id}`;
      return { id: session.id, location: signed(`/uploads/${session.id}`, { ret }) };
    },
    status: (id: string, o?: StorageOptions): Promise<UploadStatus | undefined> =>
      backingUploads.status(id, o),
    append: (id, offset, data, o) => backingUploads.append(id, offset, data, o),
    read: (id, o) => backingUploads.read(id, o),
    commit: (id, digest, o) => backingUploads.commit(id, digest, o),
    cancel: (id, o) => backingUploads.cancel(id, o),
    bindRegistry(h: RegistryHooks): void {
      hooks = h;
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://object.invalid');
    const method = req.method ?? 'GET';
    requests.push({
      method,
      path: url.pathname,
      authorization: req.headers.authorization !== undefined,
    });
    const exp = url.searchParams.get('exp') ?? '';
    const sig = url.searchParams.get('sig') ?? '';
    const ret = url.searchParams.get('ret') ?? '';
    const valid =
      /^\d+$/.test(exp) &&
      Number(exp) >= Math.floor(Date.now() / 1000) &&
      safeEqual(sig, sign(secret, [url.pathname, exp, ret]));
    if (!valid) {
      req.resume();
      reply(res, 403, { 'Content-Type': 'text/plain' }, 'bad or expired signature');
      return;
    }
    const blob = /^\/blobs\/([^/]+)$/.exec(url.pathname);
    if (blob !== null && (method === 'GET' || method === 'HEAD')) {
      req.resume();
      const digest = blob[1] ?? '';
      if (!isDigest(digest)) {
        reply(res, 404);
        return;
      }
      const st = await backing.blobs.stat(digest);
      if (st === undefined) {
        reply(res, 404);
        return;
      }
      let start = 0;
      let end = st.size - 1;
      let status = 200;
      const headers: Record<string, string | number> = {
        'Content-Type': 'application/octet-stream',
        'Accept-Ranges': 'bytes',
      };
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (range !== null) {
        start = Number(range[1]);
        end = range[2] === '' || range[2] === undefined ? end : Math.min(Number(range[2]), end);
        if (start > end) {
          reply(res, 416, { 'Content-Range': `bytes */${st.size}` });
          return;
        }
        status = 206;
        headers['Content-Range'] = `bytes ${start}-${end}/${st.size}`;
      }
      const length = st.size === 0 ? 0 : end - start + 1;
      res.writeHead(status, { ...headers, 'Content-Length': length });
      if (method === 'HEAD' || length === 0) {
        res.end();
        return;
      }
      const stream = await backing.blobs.get(digest, { start, end });
      if (stream === undefined) {
        res.destroy();
        return;
      }
      await pipeline(stream, res).catch(() => undefined);
      return;
    }
    const upload = /^\/uploads\/([^/]+)$/.exec(url.pathname);
    if (upload === null) {
      req.resume();
      reply(res, 404);
      return;
    }
    const id = upload[1] ?? '';
    const status = await backingUploads.status(id);
    if (status === undefined) {
      req.resume();
      reply(
        res,
        404,
        { 'Content-Type': 'application/json' },
        JSON.stringify({ errors: [{ code: 'BLOB_UPLOAD_UNKNOWN', message: 'upload unknown' }] }),
      );
      return;
    }
    const rangeOf = (size: number): string => `0-${Math.max(0, size - 1)}`;
    if (method === 'GET') {
      req.resume();
      reply(res, 204, { Location: ret, Range: rangeOf(status.size) });
      return;
    }
    if (method === 'DELETE') {
      req.resume();
      await backingUploads.cancel(id);
      reply(res, 204);
      return;
    }
    if (method !== 'PATCH' && method !== 'PUT') {
      req.resume();
      reply(res, 405);
      return;
    }
    const contentRange = /^(\d+)-(\d+)$/.exec(req.headers['content-range'] ?? '');
    if (contentRange !== null && Number(contentRange[1]) !== status.size) {
      req.resume();
      reply(res, 416, { Location: ret, Range: rangeOf(status.size) });
      return;
    }
    const size = await backingUploads.append(id, status.size, req);
    if (method === 'PATCH') {
      reply(res, 202, { Location: ret, Range: rangeOf(size) });
      return;
    }
    // Closing PUT on the object server: the registry verifies and commits.
    if (hooks === undefined) {
      reply(res, 500, {}, 'no registry bound');
      return;
    }
    const done: CompletionResponse = await hooks.complete(id, url.searchParams.get('digest') ?? '');
    const headers = { ...done.headers };
    if (headers.Location?.startsWith('/') === true)
      headers.Location = new URL(headers.Location, ret).toString();
    reply(res, done.status, headers, done.body);
  };

  return {
    storage: { blobs, uploads, metadata: options.metadata ?? backing.metadata },
    get url() {
      return origin;
    },
    requests,
    async start(): Promise<string> {
      const s = createServer((req, res) => {
        handle(req, res).catch(() => {
          if (!res.headersSent) reply(res, 500);
          else res.destroy();
        });
      });
      server = s;
      const host = options.host ?? '127.0.0.1';
      await new Promise<void>((resolve) => s.listen(0, host, resolve));
      origin = `http://${host}:${(s.address() as AddressInfo).port}`;
      return origin;
    },
    async close(): Promise<void> {
      const s = server;
      server = undefined;
      if (s === undefined) return;
      await new Promise<void>((resolve) => {
        s.close(() => {
          resolve();
        });
        s.closeAllConnections();
      });
    },
  };
}
