import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, roundRobinProxy, type RoundRobinProxy } from '../src/index.js';

function echo(name: string): Promise<Server> {
  const server = createServer((req, res) => {
    let body = 0;
    req.on('data', (b: Buffer) => (body += b.length));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ name, host: req.headers.host, path: req.url, body }));
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      resolve(server);
    }),
  );
}

describe('roundRobinProxy', () => {
  let a: Server;
  let b: Server;
  let proxy: RoundRobinProxy;
  beforeAll(async () => {
    [a, b] = await Promise.all([echo('a'), echo('b')]);
    const url = (s: Server): string => `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
    proxy = await roundRobinProxy([url(a), url(b)]);
  });
  afterAll(async () => {
    await proxy.close();
    a.close();
    b.close();
  });

  it('alternates upstreams per request on one connection, keeping Host, path and body', async () => {
    const seen: { name: string; host: string; path: string; body: number }[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await fetch(`${proxy.url}/v2/x?i=${i}`, { method: 'POST', body: 'x'.repeat(i) });
      seen.push((await r.json()) as (typeof seen)[number]);
    }
    expect(seen.map((s) => s.name)).toEqual(['a', 'b', 'a', 'b']);
    expect(seen.map((s) => s.body)).toEqual([0, 1, 2, 3]);
    expect(seen[3]?.path).toBe('/v2/x?i=3');
    expect(seen[0]?.host).toBe(new URL(proxy.url).host);
    expect(proxy.counts).toEqual([2, 2]);
  });

  it('answers 502 when an upstream is unreachable', async () => {
    const closed = await roundRobinProxy([`http://127.0.0.1:${await freePort()}`]);
    try {
      const r = await fetch(`${closed.url}/v2/`);
      expect(r.status).toBe(502);
      await r.arrayBuffer();
    } finally {
      await closed.close();
    }
  });
});
