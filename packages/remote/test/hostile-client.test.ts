import { mkdtemp, rm } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isLadingError } from '@lading/core';
import { PAGINATION_LIMITS, RegistryClient } from '../src/index.js';
import { selfSignedCert } from './helpers.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function listen(server: Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** serve starts a plain-http server on 127.0.0.1 and returns its host:port. */
function serve(handler: Handler): Promise<string> {
  return listen(createHttpServer(handler));
}

const user = { username: 'alice', password: 'hunter2' };

describe('RegistryClient token realms', () => {
  it('refuses to send credentials to an http realm when the registry is https', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lading-realm-'));
    try {
      const { key, cert: ca } = await selfSignedCert(dir);
      const seen: (string | undefined)[] = [];
      const tokens = await serve((req, res) => {
        seen.push(req.headers.authorization);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"t"}');
      });
      const registry = await listen(
        createHttpsServer({ key, cert: ca }, (_req, res) => {
          res
            .writeHead(401, {
              'www-authenticate': `Bearer realm="http://${tokens}/token",service="reg"`,
            })
            .end();
        }),
      );
      const client = new RegistryClient(registry, {
        scheme: 'https',
        ca,
        auth: user,
        useStoredCredentials: false,
      });
      const err = await client.headBlob('a/b', `sha256:${'0'.repeat(64)}`).catch((e: unknown) => e);
      expect(isLadingError(err, 'UNAUTHORIZED')).toBe(true);
      expect((err as Error).message).toMatch(/plain-http token realm/);
      expect((err as Error).message).not.toContain(user.password);
      expect(seen.filter((a) => a !== undefined)).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.each(['::not a url', 'file:///etc/passwd'])(
    'fails with UNAUTHORIZED, not a TypeError, when the realm is %s',
    async (realm) => {
      const host = await serve((_req, res) => {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm}"` }).end();
      });
      const client = new RegistryClient(host, { auth: user, useStoredCredentials: false });
      const err = await client.headBlob('a/b', `sha256:${'0'.repeat(64)}`).catch((e: unknown) => e);
      expect(isLadingError(err, 'UNAUTHORIZED')).toBe(true);
    },
  );
});

/** pager answers /v2/_catalog pages from `page(n)` (n from the `last` query) and counts requests. */
async function pager(
  page: (n: number) => { repositories: string[]; next?: string },
): Promise<{ client: RegistryClient; count: () => number }> {
  let count = 0;
  const host = await serve((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/v2/') {
      res.writeHead(200).end('{}');
      return;
    }
    count++;
    const p = page(Number(url.searchParams.get('last') ?? '0'));
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (p.next !== undefined) headers.link = `<${p.next}>; rel="next"`;
    res.writeHead(200, headers).end(JSON.stringify({ repositories: p.repositories }));
  });
  return {
    client: new RegistryClient(host, { useStoredCredentials: false }),
    count: () => count,
  };
}

describe('RegistryClient pagination', () => {
  it('stops with REGISTRY_ERROR on a Link that points at its own page', async () => {
    const { client, count } = await pager(() => ({ repositories: ['a'], next: '/v2/_catalog' }));
    const err = await client.catalog().catch((e: unknown) => e);
    expect(isLadingError(err, 'REGISTRY_ERROR')).toBe(true);
    expect(count()).toBe(1);
  });

  it('stops with REGISTRY_ERROR on a cycle of two pages', async () => {
    const { client, count } = await pager((n) => ({
      repositories: [`r${String(n)}`],
      next: `/v2/_catalog?last=${String(1 - n)}`,
    }));
    const err = await client.catalog().catch((e: unknown) => e);
    expect(isLadingError(err, 'REGISTRY_ERROR')).toBe(true);
    expect(count()).toBe(3); // _catalog, ?last=1, ?last=0, then ?last=1 again
  });

  it('stops with REGISTRY_ERROR after the page limit on an endless listing', async () => {
    const { client, count } = await pager((n) => ({
      repositories: [`r${String(n)}`],
      next: `/v2/_catalog?last=${String(n + 1)}`,
    }));
    const err = await client.catalog().catch((e: unknown) => e);
    expect(isLadingError(err, 'REGISTRY_ERROR')).toBe(true);
    expect(count()).toBe(PAGINATION_LIMITS.pages);
  });

  it('stops with REGISTRY_ERROR when the pages add up to too many bytes', async () => {
    const big = Array.from({ length: 1000 }, (_, i) => `${'r'.repeat(3000)}${String(i)}`);
    const { client, count } = await pager((n) => ({
      repositories: big,
      next: `/v2/_catalog?last=${String(n + 1)}`,
    }));
    const err = await client.catalog().catch((e: unknown) => e);
    expect(isLadingError(err, 'REGISTRY_ERROR')).toBe(true);
    expect(count()).toBeLessThanOrEqual(Math.ceil(PAGINATION_LIMITS.bytes / 3_000_000) + 1);
  });

  it('reads a 200k-entry page without a RangeError', async () => {
    const many = Array.from({ length: 200_000 }, (_, i) => `r${String(i)}`);
    const { client } = await pager(() => ({ repositories: many }));
    const repos = await client.catalog();
    expect(repos).toHaveLength(200_000);
    expect(repos[199_999]).toBe('r199999');
  });
});
