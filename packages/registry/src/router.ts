import type { IncomingMessage, ServerResponse } from 'node:http';
import { deleteBlob, getBlob } from './blobs.js';
import { catalog, referrers, tags } from './discovery.js';
import { HttpError, SpecErrorCode } from './errors.js';
import { repoNeed, type Call, type RegistryContext } from './internal/context.js';
import { sendError, sendJson, splitUrl } from './internal/http.js';
import type { RequestRate } from './limits.js';
import { deleteManifest, getManifest, putManifest } from './manifests.js';
import { isRepositoryName } from './names.js';
import { cancelUpload, patchUpload, putUpload, startUpload, uploadStatus } from './uploads.js';

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

/**
 * route maps an undecoded `/v2/…` path to its endpoint, or undefined.
 * @throws HttpError 400 NAME_INVALID when the repository name breaks the grammar
 */
function route(path: string): Route | undefined {
  if (path === '/v2/' || path === '/v2') return { kind: 'ping' };
  if (path === '/v2/_catalog') return { kind: 'catalog' };
  const m = routePattern.exec(path);
  if (m === null) return undefined;
  const [, name = '', tagList, ref, uploadId, blob, referrer] = m;
  if (!isRepositoryName(name))
    throw new HttpError(400, SpecErrorCode.NameInvalid, undefined, { name });
  if (tagList !== undefined) return { kind: 'tags', name };
  if (ref !== undefined) return { kind: 'manifest', name, ref };
  if (uploadId !== undefined)
    return uploadId === '' ? { kind: 'uploads', name } : { kind: 'upload', name, id: uploadId };
  if (blob !== undefined) return { kind: 'blob', name, digest: blob };
  if (referrer !== undefined) return { kind: 'referrers', name, digest: referrer };
  return undefined;
}

function allow(method: string, ...methods: string[]): void {
  if (!methods.includes(method)) {
    throw new HttpError(405, SpecErrorCode.Unsupported, `method ${method} not allowed`, undefined, {
      Allow: methods.join(', '),
    });
  }
}

/** clientLeft tells whether `err` is only the client going away mid-request. */
function clientLeft(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE';
}

/**
 * Router answers every request: rate limit, the token endpoint, then each
 * `/v2/` endpoint after its access check, and errors as spec error bodies.
 */
export class Router {
  readonly #ctx: RegistryContext;
  readonly #rate: RequestRate;

  constructor(ctx: RegistryContext, rate: RequestRate) {
    this.#ctx = ctx;
    this.#rate = rate;
  }

  /** handle answers `req`; it never rejects (a failure after the headers destroys the response). */
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
      // A request whose body was read is destroyed by then: only a
      // response that can no longer be written goes unanswered.
      const gone = res.destroyed || res.writableEnded;
      if (!gone || !clientLeft(err)) this.#ctx.log(err, req);
      if (gone) return;
      // The details (store endpoints, keys, paths) stay in the log.
      sendJson(req, res, 500, { errors: [{ code: 'UNKNOWN', message: 'internal server error' }] });
    }
  }

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ctx = this.#ctx;
    const auth = ctx.auth;
    this.#rate.throttle(req);
    const { path, query } = splitUrl(req.url);
    const call: Call = { ctx, req, res, query };
    const method = req.method ?? 'GET';
    if (path === '/token' && auth.tokenEndpoint) {
      await auth.handleToken(req, res, query);
      return;
    }
    if (!path.startsWith('/v2')) throw new HttpError(404, SpecErrorCode.Unsupported, 'not found');
    const r = route(path);
    if (r === undefined) {
      throw new HttpError(404, SpecErrorCode.Unsupported, 'no such endpoint', { path });
    }
    switch (r.kind) {
      case 'ping':
        allow(method, 'GET', 'HEAD');
        await auth.authorize(req, { kind: 'ping' });
        sendJson(req, res, 200, {});
        return;
      case 'catalog':
        allow(method, 'GET');
        await catalog(call, await auth.authorize(req, { kind: 'catalog' }));
        return;
      case 'tags':
        allow(method, 'GET');
        await auth.authorize(req, repoNeed(r.name, 'pull'));
        await tags(call, r.name);
        return;
      case 'referrers':
        allow(method, 'GET');
        await auth.authorize(req, repoNeed(r.name, 'pull'));
        await referrers(call, r.name, r.digest);
        return;
      case 'blob':
        allow(method, 'GET', 'HEAD', 'DELETE');
        if (method === 'DELETE') {
          await auth.authorize(req, repoNeed(r.name, 'delete'));
          await deleteBlob(call, r.name, r.digest);
        } else {
          await auth.authorize(req, repoNeed(r.name, 'pull'));
          await getBlob(call, r.name, r.digest);
        }
        return;
      case 'uploads': {
        allow(method, 'POST');
        const user = await auth.authorize(req, repoNeed(r.name, 'pull', 'push'));
        await startUpload(call, r.name, user);
        return;
      }
      case 'upload':
        allow(method, 'GET', 'PATCH', 'PUT', 'DELETE');
        await auth.authorize(req, repoNeed(r.name, 'pull', 'push'));
        if (method === 'GET') await uploadStatus(call, r.name, r.id);
        else if (method === 'PATCH') await patchUpload(call, r.name, r.id);
        else if (method === 'PUT') await putUpload(call, r.name, r.id);
        else await cancelUpload(call, r.name, r.id);
        return;
      case 'manifest':
        allow(method, 'GET', 'HEAD', 'PUT', 'DELETE');
        if (method === 'PUT') {
          await auth.authorize(req, repoNeed(r.name, 'pull', 'push'));
          await putManifest(call, r.name, r.ref);
        } else if (method === 'DELETE') {
          await auth.authorize(req, repoNeed(r.name, 'delete'));
          await deleteManifest(call, r.name, r.ref);
        } else {
          await auth.authorize(req, repoNeed(r.name, 'pull'));
          await getManifest(call, r.name, r.ref);
        }
        return;
    }
  }
}
