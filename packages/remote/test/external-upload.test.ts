import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import {
  appendLayers,
  copy,
  emptyImage,
  layerFromBytes,
  writeImage,
  type Image,
} from '@lading/core';
import {
  createRegistry,
  memoryStorage,
  type Registry,
  type RegistryHooks,
  type RegistryStorage,
  type UploadStore,
} from '@lading/registry';
import { htpasswdEntry } from '@lading/testing';
import { pull, registryTarget, write } from '../src/index.js';
import { CountingSource, TestStreamLayer, testImage } from './helpers.js';

const alice = { username: 'alice', password: 'pw' };

describe('uploads handed to an external location by @lading/registry', () => {
  let registry: Registry;
  let host: string;
  let external: Server;
  let externalUrl = '';
  const seen: { method: string; url: string; headers: IncomingHttpHeaders }[] = [];
  beforeAll(async () => {
    const base = memoryStorage();
    const uploads = base.uploads!;
    let hooks: RegistryHooks | undefined;
    const handed: UploadStore = {
      create: async (repository, options) => {
        const s = await uploads.create(repository, options);
        return {
          id: s.id,
          location: `${externalUrl}/bucket/${s.id}?X-Signature=a%2Fb%3D&expires=99`,
        };
      },
      status: (id, o) => uploads.status(id, o),
      append: (id, offset, data, o) => uploads.append(id, offset, data, o),
      read: (id, o) => uploads.read(id, o),
      commit: (id, digest, o) => uploads.commit(id, digest, o),
      cancel: (id, o) => uploads.cancel(id, o),
      bindRegistry: (h) => {
        hooks = h;
        uploads.bindRegistry?.(h);
      },
    };
    const storage: RegistryStorage = { ...base, uploads: handed };
    external = createServer((req, res) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
      const url = new URL(req.url ?? '/', externalUrl);
      const id = url.pathname.split('/')[2] ?? '';
      void (async () => {
        const st = await uploads.status(id);
        if (st === undefined) {
          req.resume();
          res.writeHead(404).end();
          return;
        }
        if (req.method === 'PATCH' || req.method === 'PUT') {
          const size = await uploads.append(id, st.size, req);
          if (req.method === 'PATCH') {
            res.writeHead(202, { location: req.url ?? '', range: `0-${size - 1}` }).end();
            return;
          }
          const done = await hooks!.complete(id, url.searchParams.get('digest') ?? '');
          res.writeHead(done.status, done.headers).end(done.body);
          return;
        }
        if (req.method === 'DELETE') {
          await uploads.cancel(id);
          res.writeHead(204).end();
          return;
        }
        res.writeHead(405).end();
      })().catch(() => res.destroy());
    });
    await new Promise<void>((r) => external.listen(0, '127.0.0.1', r));
    externalUrl = `http://127.0.0.1:${(external.address() as AddressInfo).port}`;
    registry = createRegistry({
      storage,
      auth: { type: 'basic', htpasswd: htpasswdEntry(alice.username, alice.password) },
    });
    const { port } = await registry.listen({ host: '127.0.0.1', port: 0 });
    host = `127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await registry.close();
    external.closeAllConnections();
    await new Promise((r) => external.close(r));
  });

  it('streams layer bytes to the external location without credentials, keeping its signed query', async () => {
    const layer = new TestStreamLayer(new CountingSource(5, 40_000));
    const image = testImage([layer]);
    const result = await write(`${host}/ext/app:1`, image, { auth: alice }).done;
    expect(result.digest).toBe(await image.digest());
    expect(seen.length).toBeGreaterThanOrEqual(3); // layer PATCH + PUT, config PUT
    for (const s of seen) expect(s.headers.authorization).toBeUndefined();
    const puts = seen.filter((s) => s.method === 'PUT').map((s) => new URL(s.url, externalUrl));
    for (const u of puts) {
      expect(u.searchParams.get('X-Signature')).toBe('a/b=');
      expect(u.search.startsWith('?X-Signature=a%2Fb%3D&expires=99&digest=sha256%3A')).toBe(true);
    }
    expect(puts.map((u) => u.searchParams.get('digest'))).toContain(await layer.digest());
    const back = (await pull(`${host}/ext/app:1`, { auth: alice })) as Image;
    expect(await back.digest()).toBe(result.digest);
  });

  it('copies a streamed blob there as the body of one PUT ?digest= on its own connection, without credentials', async () => {
    const source = createRegistry({ storage: memoryStorage() });
    try {
      const from = new URL((await source.listen({ host: '127.0.0.1', port: 0 })).url).host;
      const layer = layerFromBytes(randomBytes(2 * 1024 * 1024));
      await writeImage(registryTarget(`${from}/src/app`), 'v1', appendLayers(emptyImage(), layer));
      seen.length = 0;
      await copy(
        registryTarget(`${from}/src/app`),
        'v1',
        registryTarget(`${host}/ext/copied`, { auth: alice }),
        'v1',
      );
      const size = await layer.size();
      expect(seen.filter((x) => x.method === 'PATCH')).toEqual([]);
      const put = seen.find(
        (x) => x.method === 'PUT' && x.headers['content-length'] === String(size),
      );
      expect(put?.headers.connection).toBe('close');
      for (const x of seen) expect(x.headers.authorization).toBeUndefined();
      // The external location, its signature kept, with the digest added.
      expect(put?.url.startsWith(`/bucket/`)).toBe(true);
      const url = new URL(put!.url, externalUrl);
      expect(url.searchParams.get('X-Signature')).toBe('a/b=');
      expect(url.searchParams.get('digest')).toBe(await layer.digest());
      const back = (await pull(`${host}/ext/copied:v1`, { auth: alice })) as Image;
      const [copied] = await back.layers();
      expect(await copied!.digest()).toBe(await layer.digest());
    } finally {
      await source.close();
    }
  });
});
