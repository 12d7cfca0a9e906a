import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Fault decides, per request, whether the fake misbehaves; return true when it handled the request. */
export type Fault = (
  req: IncomingMessage,
  res: ServerResponse,
  ctx: FakeContext,
) => boolean | Promise<boolean>;

export interface FakeContext {
  readonly uploads: Map<string, Buffer>;
  readonly blobs: Map<string, Buffer>;
  readonly manifests: Map<string, { bytes: Buffer; type: string }>;
  count: number;
}

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly authorization: string | undefined;
  readonly contentRange: string | undefined;
}

/**
 * FakeRegistry is a tiny node:http registry for error paths no real server
 * produces (416 after lost bytes, dropped connections, 429/503 storms,
 * Locations on other origins). Only what the tests need is implemented.
 */
export class FakeRegistry {
  readonly seen: SeenRequest[] = [];
  readonly ctx: FakeContext;
  faults: Fault[] = [];
  /** uploadBase is where POST points uploads (default: this server). */
  uploadBase: string | undefined;
  requireAuth: string | undefined;
  #server: Server;
  url = '';
  host = '';

  constructor(ctx?: FakeContext) {
    this.ctx = ctx ?? { uploads: new Map(), blobs: new Map(), manifests: new Map(), count: 0 };
    this.#server = createServer((req, res) => {
      void this.#handle(req, res);
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    const port = (this.#server.address() as AddressInfo).port;
    this.url = `http://127.0.0.1:${port}`;
    this.host = `127.0.0.1:${port}`;
    return this;
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((r) =>
      this.#server.close(() => {
        r();
      }),
    );
  }

  async #body(req: IncomingMessage): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of req) parts.push(c as Buffer);
    return Buffer.concat(parts);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.ctx.count++;
    this.seen.push({
      method: req.method ?? '',
      url: req.url ?? '',
      authorization: req.headers.authorization,
      contentRange: req.headers['content-range'],
    });
    for (const f of this.faults) if (await f(req, res, this.ctx)) return;
    const url = new URL(req.url ?? '/', this.url);
    const path = url.pathname;
    if (
      this.requireAuth !== undefined &&
      path.startsWith('/v2/') &&
      req.headers.authorization !== this.requireAuth
    ) {
      await this.#body(req);
      res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' }).end();
      return;
    }
    if (path === '/v2/') {
      res.writeHead(200).end();
      return;
    }
    let m: RegExpExecArray | null;
    if (req.method === 'POST' && (m = /^\/v2\/(.+)\/blobs\/uploads\/$/.exec(path)) !== null) {
      const id = String(this.ctx.uploads.size + 1);
      this.ctx.uploads.set(id, Buffer.alloc(0));
      const base = this.uploadBase ?? this.url;
      res
        .writeHead(202, { location: `${base}/upload/${id}?sig=abc%2Bdef&state=0`, range: '0-0' })
        .end();
      return;
    }
    if ((m = /^\/(?:v2\/.+\/blobs\/uploads|upload)\/(\d+)$/.exec(path)) !== null) {
      const id = m[1]!;
      const have = this.ctx.uploads.get(id);
      if (have === undefined) {
        res.writeHead(404).end();
        return;
      }
      const loc = (n: number): string =>
        `${url.pathname}?sig=${encodeURIComponent(url.searchParams.get('sig') ?? '')}&state=${n}`;
      if (req.method === 'PATCH') {
        const body = await this.#body(req);
        const range = req.headers['content-range'];
        if (range !== undefined && Number(range.split('-')[0]) !== have.length) {
          res.writeHead(416, { location: loc(have.length), range: `0-${have.length - 1}` }).end();
          return;
        }
        const next = Buffer.concat([have, body]);
        this.ctx.uploads.set(id, next);
        res.writeHead(202, { location: loc(next.length), range: `0-${next.length - 1}` }).end();
        return;
      }
      if (req.method === 'GET') {
        res
          .writeHead(204, {
            location: loc(have.length),
            range: `0-${Math.max(0, have.length - 1)}`,
          })
          .end();
        return;
      }
      if (req.method === 'PUT') {
        const body = await this.#body(req);
        const all = Buffer.concat([have, body]);
        const digest = `sha256:${createHash('sha256').update(all).digest('hex')}`;
        if (digest !== url.searchParams.get('digest')) {
          res
            .writeHead(400, { 'content-type': 'application/json' })
            .end('{"errors":[{"code":"DIGEST_INVALID"}]}');
          return;
        }
        this.ctx.blobs.set(digest, all);
        this.ctx.uploads.delete(id);
        res
          .writeHead(201, { location: `/v2/x/blobs/${digest}`, 'docker-content-digest': digest })
          .end();
        return;
      }
      if (req.method === 'DELETE') {
        this.ctx.uploads.delete(id);
        res.writeHead(204).end();
        return;
      }
    }
    if ((m = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/.exec(path)) !== null) {
      const b = this.ctx.blobs.get(m[2]!);
      if (b === undefined) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-length': b.length, 'docker-content-digest': m[2]! });
      res.end(req.method === 'HEAD' ? undefined : b);
      return;
    }
    if ((m = /^\/v2\/(.+)\/manifests\/(.+)$/.exec(path)) !== null) {
      const key = `${m[1]!}:${m[2]!}`;
      if (req.method === 'PUT') {
        const bytes = await this.#body(req);
        const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
        const rec = { bytes, type: req.headers['content-type'] ?? '' };
        this.ctx.manifests.set(key, rec);
        this.ctx.manifests.set(`${m[1]!}:${digest}`, rec);
        res.writeHead(201, { 'docker-content-digest': digest }).end();
        return;
      }
      const rec = this.ctx.manifests.get(key);
      if (rec === undefined) {
        res
          .writeHead(404, { 'content-type': 'application/json' })
          .end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}');
        return;
      }
      res.writeHead(200, { 'content-type': rec.type, 'content-length': rec.bytes.length });
      res.end(req.method === 'HEAD' ? undefined : rec.bytes);
      return;
    }
    await this.#body(req);
    res.writeHead(404).end();
  }
}
