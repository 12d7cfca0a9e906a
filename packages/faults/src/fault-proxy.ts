import { createHash } from 'node:crypto';
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** FaultAction is what the proxy does to a request a rule matches. */
export type FaultAction =
  | {
      readonly kind: 'status';
      readonly status: number;
      readonly headers?: Readonly<Record<string, string>>;
    }
  | { readonly kind: 'reset-request'; readonly afterBytes: number }
  | { readonly kind: 'reset-response'; readonly afterBytes: number }
  | { readonly kind: 'truncate'; readonly keepBytes: number }
  | { readonly kind: 'corrupt'; readonly offset: number }
  | { readonly kind: 'wrong-digest' }
  | { readonly kind: 'redirect' }
  | { readonly kind: 'drop-after-forward' }
  | { readonly kind: 'stall'; readonly ms: number };

/**
 * FaultRule matches requests by method and path (and, with `minLength`, a
 * Content-Length at least that); `nth` picks the n-th match (1-based),
 * `times` how many from there.
 */
export type FaultRule = {
  readonly method: string;
  readonly path: RegExp;
  readonly minLength?: number;
  readonly nth?: number;
  readonly times?: number;
  readonly action: FaultAction;
};

/** SeenRequest is what the proxy (or the redirect origin) recorded. */
export type SeenRequest = {
  readonly method: string;
  readonly path: string;
  readonly authorization: boolean;
  readonly fault: FaultAction['kind'] | undefined;
};

/** FaultProxy sits between a client and a registry on 127.0.0.1 and injects faults by rule. */
export interface FaultProxy {
  /** host is `127.0.0.1:port`, for references. */
  readonly host: string;
  /** requests every request the proxy received, in order. */
  readonly requests: SeenRequest[];
  /** redirected every request the redirect origin received. */
  readonly redirected: SeenRequest[];
  /** injected counts faults actually applied. */
  injected(): number;
  close(): Promise<void>;
}

type LiveRule = FaultRule & { seen: number; applied: number };

// The client's Host header is kept, so registries that build absolute
// Locations (distribution does) point them back at the proxy.
function hopHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || k === 'connection' || k === 'keep-alive') continue;
    out[k] = v;
  }
  return out;
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/**
 * faultProxy starts a proxy in front of `upstream` (`http://127.0.0.1:port`)
 * and a second origin that blob GETs can be redirected to (it fetches the
 * bytes from the registry itself, like object storage behind a pre-signed
 * URL, and records whether the client sent it credentials).
 */
export async function faultProxy(
  upstream: string,
  rules: readonly FaultRule[],
): Promise<FaultProxy> {
  const up = new URL(upstream);
  const live: LiveRule[] = rules.map((r) => ({ ...r, seen: 0, applied: 0 }));
  const requests: SeenRequest[] = [];
  const redirected: SeenRequest[] = [];
  const sockets = new Set<Socket>();
  // Server-side credentials for the redirect origin's own fetches, keyed by path.
  const grants = new Map<string, string | undefined>();

  // A rule counts as applied when its action fires: a reset armed on a
  // request whose body never reaches `afterBytes` does not count.
  const pick = (req: IncomingMessage): { action: FaultAction; fired: () => void } | undefined => {
    for (const r of live) {
      if (r.method !== req.method || !r.path.test(req.url ?? '')) continue;
      if (r.minLength !== undefined && Number(req.headers['content-length'] ?? -1) < r.minLength)
        continue;
      r.seen++;
      const first = r.nth ?? 1;
      if (r.seen >= first && r.seen < first + (r.times ?? 1)) {
        if (r.action.kind !== 'reset-request') r.applied++;
        return {
          action: r.action,
          fired: () => {
            r.applied++;
          },
        };
      }
    }
    return undefined;
  };

  const forward = (
    req: IncomingMessage,
    onResponse: (res: IncomingMessage) => void,
    onRequestBytes?: (n: number, upstreamReq: ReturnType<typeof httpRequest>) => void,
  ): ReturnType<typeof httpRequest> => {
    const out = httpRequest(
      {
        host: up.hostname,
        port: up.port,
        method: req.method,
        path: req.url,
        headers: hopHeaders(req.headers),
      },
      onResponse,
    );
    out.on('error', () => req.socket.destroy());
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      onRequestBytes?.(n, out);
    });
    req.pipe(out);
    return out;
  };

  const relay = (
    res: IncomingMessage,
    client: ServerResponse,
    mutate?: (h: IncomingHttpHeaders) => void,
  ): void => {
    const headers = { ...res.headers };
    mutate?.(headers);
    client.writeHead(res.statusCode ?? 502, headers);
    res.pipe(client);
  };

  let origin = '';
  const redirectServer = createServer((req, res) => {
    const path = req.url ?? '';
    redirected.push({
      method: req.method ?? '',
      path,
      authorization: req.headers.authorization !== undefined,
      fault: undefined,
    });
    const auth = grants.get(path);
    const out = httpRequest(
      {
        host: up.hostname,
        port: up.port,
        method: req.method,
        path,
        headers: { host: up.host, ...(auth === undefined ? {} : { authorization: auth }) },
      },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    out.end();
  });

  const server = createServer((req, res) => {
    const picked = pick(req);
    const action = picked?.action;
    requests.push({
      method: req.method ?? '',
      path: req.url ?? '',
      authorization: req.headers.authorization !== undefined,
      fault: action?.kind,
    });
    const go = (): void => {
      switch (action?.kind) {
        case undefined:
          forward(req, (r) => {
            relay(r, res);
          });
          return;
        case 'stall':
          forward(req, (r) => {
            relay(r, res);
          });
          return;
        case 'status':
          req.resume();
          req.on('end', () => {
            res.writeHead(action.status, { 'content-type': 'application/json', ...action.headers });
            res.end(
              JSON.stringify({
                errors: [{ code: 'UNKNOWN', message: `injected ${action.status}` }],
              }),
            );
          });
          return;
        case 'reset-request': {
          let reset = false;
          forward(
            req,
            // A body that never reached the threshold is answered normally.
            (r) => {
              if (!reset) relay(r, res);
            },
            (n, out) => {
              if (!reset && n >= action.afterBytes) {
                reset = true;
                picked?.fired();
                out.destroy();
                req.socket.destroy();
              }
            },
          );
          return;
        }
        case 'reset-response':
        case 'truncate':
        case 'corrupt': {
          forward(req, (r) => {
            res.writeHead(r.statusCode ?? 502, r.headers);
            let n = 0;
            r.on('data', (c: Buffer) => {
              const start = n;
              n += c.length;
              if (action.kind === 'corrupt' && action.offset >= start && action.offset < n) {
                const copy = Buffer.from(c);
                copy[action.offset - start] = (copy[action.offset - start] ?? 0) ^ 0xff;
                res.write(copy);
                return;
              }
              if (
                action.kind !== 'corrupt' &&
                n > (action.kind === 'truncate' ? action.keepBytes : action.afterBytes)
              ) {
                const keep =
                  (action.kind === 'truncate' ? action.keepBytes : action.afterBytes) - start;
                if (keep > 0) res.write(c.subarray(0, keep));
                r.destroy();
                if (action.kind === 'truncate') res.socket?.end();
                else res.socket?.destroy();
                return;
              }
              res.write(c);
            });
            r.on('end', () => res.end());
          });
          return;
        }
        case 'wrong-digest':
          forward(req, (r) => {
            relay(r, res, (h) => {
              h['docker-content-digest'] =
                `sha256:${createHash('sha256').update('not this').digest('hex')}`;
            });
          });
          return;
        case 'redirect':
          req.resume();
          grants.set(req.url ?? '', req.headers.authorization);
          res.writeHead(307, { location: `${origin}${req.url ?? ''}`, 'content-length': '0' });
          res.end();
          return;
        case 'drop-after-forward':
          forward(req, (r) => {
            r.resume();
            r.on('end', () => req.socket.destroy());
          });
          return;
      }
    };
    if (action?.kind === 'stall') setTimeout(go, action.ms);
    else go();
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const port = await listen(server);
  origin = `http://127.0.0.1:${await listen(redirectServer)}`;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    redirected,
    injected: () => live.reduce((a, r) => a + r.applied, 0),
    close: async () => {
      for (const s of sockets) s.destroy();
      redirectServer.closeAllConnections();
      await Promise.all([
        new Promise<void>((r) =>
          server.close(() => {
            r();
          }),
        ),
        new Promise<void>((r) =>
          redirectServer.close(() => {
            r();
          }),
        ),
      ]);
    },
  };
}
