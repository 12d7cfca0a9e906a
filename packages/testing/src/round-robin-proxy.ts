import { Agent, createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';

/** RoundRobinProxy spreads HTTP requests over several upstreams, one after the other. */
export interface RoundRobinProxy {
  /** url is `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  readonly upstreams: readonly string[];
  /** counts is how many requests each upstream received, by index. */
  readonly counts: number[];
  close(): Promise<void>;
}

/**
 * roundRobinProxy forwards request n to `upstreams[n % upstreams.length]`
 * (per request, not per connection, so the chunks of one upload land on
 * different upstreams), keeping the Host header the client sent and
 * streaming both bodies with backpressure. An upstream that cannot be
 * reached answers 502.
 */
export async function roundRobinProxy(
  upstreams: readonly string[],
  options: { readonly port?: number; readonly host?: string } = {},
): Promise<RoundRobinProxy> {
  if (upstreams.length === 0) throw new Error('roundRobinProxy needs at least one upstream');
  const targets = upstreams.map((u) => new URL(u));
  const counts = upstreams.map(() => 0);
  const agent = new Agent({ keepAlive: true });
  let next = 0;
  const server = createServer((req, res) => {
    const index = next++ % targets.length;
    const target = targets[index];
    if (target === undefined) return;
    counts[index] = (counts[index] ?? 0) + 1;
    const out = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent,
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        pipeline(upRes, res).catch(() => {
          res.destroy();
        });
      },
    );
    out.on('error', () => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      res.writeHead(502, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNKNOWN', message: 'upstream unreachable' }] }));
    });
    pipeline(req, out).catch(() => {
      out.destroy();
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    upstreams,
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        agent.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}
