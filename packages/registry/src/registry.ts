import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Authenticator, type RegistryAuth } from './auth.js';
import type { RegistryContext } from './internal/context.js';
import { splitUrl } from './internal/http.js';
import { RequestRate, type WindowLimit } from './limits.js';
import { Router } from './router.js';
import { createLimitedServer, guardRequest, resolveHttpLimits, type HttpLimits } from './server.js';
import { UploadSessions } from './sessions.js';
import { memoryStorage } from './storage/memory.js';
import type { RegistryStorage } from './storage/types.js';
import { completeUpload } from './uploads.js';

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
   * store lists (`UploadStore.list`) from before a restart.
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
  /**
   * onError receives the failures clients get only a generic error for
   * (500 UNKNOWN, or 400 BLOB_UPLOAD_INVALID when the storage fails on a
   * chunk): their messages can name storage endpoints, object keys or
   * paths, which stay in the server's log. Default: one line on stderr.
   */
  readonly onError?: ((err: unknown, req: IncomingMessage | undefined) => void) | undefined;
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
   * waits for the requests under way to finish their storage work (up to
   * 10 s), then stops the upload expiry timer and the password workers:
   * once it resolves, the registry writes nothing more to its storage.
   */
  close(): Promise<void>;
}

const defaultMaxManifest = 4 * 1024 * 1024;

/** How long close() waits for the requests under way, once their connections are closed. */
const closeWaitMs = 10_000;

/** settleWithin waits for every promise to settle, or `ms`, whichever comes first. */
async function settleWithin(all: readonly Promise<unknown>[], ms: number): Promise<void> {
  if (all.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  await Promise.race([Promise.allSettled(all), late]);
  clearTimeout(timer);
}

/**
 * createRegistry builds an OCI distribution-spec v1.1 registry over
 * pluggable storage and auth.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md
 */
export function createRegistry(options: RegistryOptions = {}): Registry {
  const limits = resolveHttpLimits(options.http);
  const ctx = contextOf(options);
  const router = new Router(ctx, new RequestRate(options.rateLimit));
  ctx.sessions.start();
  let server: Server | undefined;
  // The requests under way: close() waits for their storage work.
  const inFlight = new Set<Promise<void>>();
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    guardRequest(req, res, limits);
    const handled = router.handle(req, res);
    inFlight.add(handled);
    void handled.finally(() => inFlight.delete(handled));
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
      await settleWithin([...inFlight], closeWaitMs);
      await ctx.sessions.close();
      await ctx.auth.close();
    },
  };
}

/** logError is the default {@link RegistryOptions.onError}: one line on stderr. */
function logError(err: unknown, req: IncomingMessage | undefined): void {
  const where = req === undefined ? '' : ` ${req.method ?? ''} ${splitUrl(req.url).path}`;
  const what = err instanceof Error ? (err.stack ?? err.message) : String(err);
  console.error(`lading registry:${where}: ${what}`);
}

/**
 * contextOf resolves `options` into what the endpoint modules share, with
 * the upload store bound to the registry's commit hook.
 */
function contextOf(options: RegistryOptions): RegistryContext {
  const storage = options.storage ?? memoryStorage();
  const ctx: RegistryContext = {
    storage,
    auth: new Authenticator(options.auth ?? { type: 'none' }, {
      failureLimit: options.authFailureLimit,
    }),
    sessions: new UploadSessions(
      {
        timeout: options.uploadTimeout,
        maxSize: options.maxUploadSize,
        maxSessions: options.maxUploadSessions,
        maxSessionsPerClient: options.maxUploadSessionsPerClient,
        maxBytes: options.maxUploadBytes,
      },
      storage.uploads,
    ),
    maxManifest: options.maxManifestSize ?? defaultMaxManifest,
    chunkMin: options.chunkMinLength ?? 0,
    deleteEnabled: options.deleteEnabled ?? true,
    maxPage: options.maxPageSize ?? 10_000,
    log: options.onError ?? logError,
  };
  storage.uploads?.bindRegistry?.({
    complete: (id, digest, opts) => completeUpload(ctx, id, digest, opts?.signal),
  });
  return ctx;
}
