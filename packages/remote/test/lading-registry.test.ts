import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestOf, isLadingError, layerFromBytes, type Digest, type Image } from '@lading/core';
import {
  createRegistry,
  memoryStorage,
  type Registry,
  type RegistryStorage,
} from '@lading/registry';
import { htpasswdEntry, recordingProxy } from '@lading/testing';
import type { RemoteLayer } from '../src/index.js';
import { RegistryClient, pull, write } from '../src/index.js';
import { CountingSource, TestStreamLayer, testImage } from './helpers.js';

const htpasswd = [htpasswdEntry('alice', 'wonderland'), htpasswdEntry('reader', 'readonly')].join(
  '\n',
);
const alice = { username: 'alice', password: 'wonderland' };
const reader = { username: 'reader', password: 'readonly' };

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('remote against @lading/registry with bearer tokens and redirecting storage', () => {
  let registry: Registry;
  let host: string;
  let cdn: Server;
  let cdnUrl: string;
  const cdnSeen: { path: string; headers: IncomingHttpHeaders }[] = [];
  beforeAll(async () => {
    const base = memoryStorage();
    // Blobs whose first byte is 0x1f (gzip) "live" on the CDN: the registry answers 307.
    const storage: RegistryStorage = {
      ...base,
      blobs: {
        stat: (d, o) => base.blobs.stat(d, o),
        get: (d, o) => base.blobs.get(d, o),
        location: (d) => Promise.resolve(`${cdnUrl}/cdn/${d}?signature=s3cr3t&expires=1`),
      },
    };
    cdn = createServer((req, res) => {
      cdnSeen.push({ path: req.url ?? '', headers: { ...req.headers } });
      const digest = (req.url ?? '').split('/')[2]?.split('?')[0] as Digest;
      void base.blobs.get(digest).then(async (body) => {
        if (body === undefined) {
          res.writeHead(404).end();
          return;
        }
        const bytes = await buffer(body);
        res.writeHead(200, { 'content-length': bytes.length });
        res.end(req.method === 'HEAD' ? undefined : bytes);
      });
    });
    cdnUrl = await listen(cdn);
    registry = createRegistry({
      storage,
      chunkMinLength: 50_000,
      auth: {
        type: 'token',
        users: htpasswd,
        grants: (user, _repo) =>
          user === 'alice' ? ['pull', 'push', 'delete'] : user === 'reader' ? ['pull'] : [],
      },
    });
    const { port } = await registry.listen({ host: '127.0.0.1', port: 0 });
    host = `127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await registry.close();
    await new Promise((r) => cdn.close(r));
  });

  it('pushes with bearer tokens got with basic credentials and pulls back through the redirect without sending Authorization to the CDN', async () => {
    const layer = new TestStreamLayer(new CountingSource(6, 20_000));
    const image = testImage([layer, layerFromBytes(Buffer.from('second'))]);
    const options = { auth: alice };
    const result = await write(`${host}/team/app:1`, image, options).done;
    expect(result.digest).toBe(await image.digest());
    const pulled = (await pull(`${host}/team/app:1`, options)) as Image;
    const layers = await pulled.layers();
    const bytes = await buffer(layers[0]!.compressed());
    expect(digestOf(bytes)).toBe(await layer.digest());
    expect(cdnSeen.length).toBeGreaterThan(0);
    for (const seen of cdnSeen) expect(seen.headers.authorization).toBeUndefined();
    // the pulled layer knows where its bytes live
    const remote = layers[0] as RemoteLayer;
    const d = await remote.descriptor();
    expect(d.urls?.[0]?.startsWith(`${cdnUrl}/cdn/${await layer.digest()}`)).toBe(true);
    expect(remote.knownDescriptor().urls).toBeUndefined();
  });

  it('upgrades a pull token to push scope on a new challenge', async () => {
    const options = { auth: alice };
    const client = new RegistryClient(host, options);
    expect(await client.headBlob('up/grade', digestOf('nothing'))).toBeUndefined();
    const s = await client.openUpload('up/grade');
    const r = await s.upload(Readable.from([Buffer.from('payload')]));
    expect(r.digest).toBe(digestOf('payload'));
  });

  it('gets and refreshes tokens with an identity token (OAuth2 POST)', async () => {
    const form = new URLSearchParams({
      grant_type: 'password',
      username: 'alice',
      password: 'wonderland',
      service: 'x',
    });
    const res = await fetch(`http://${host}/token`, { method: 'POST', body: form });
    const { refresh_token } = (await res.json()) as { refresh_token: string };
    const result = await write(
      `${host}/oauth/app:1`,
      testImage([layerFromBytes(Buffer.from('oauth'))]),
      {
        auth: { identityToken: refresh_token },
      },
    ).done;
    expect(result.reference).toContain('oauth/app@sha256:');
    const bad = write(`${host}/oauth/app:2`, testImage([layerFromBytes(Buffer.from('x'))]), {
      auth: { identityToken: 'garbage' },
    });
    expect(isLadingError(await bad.authorized.catch((e: unknown) => e), 'UNAUTHORIZED')).toBe(true);
  });

  it('rejects authorized with DENIED and reads no layer byte when the user may only pull', async () => {
    const source = new CountingSource(4);
    const push = write(`${host}/team/app:2`, testImage([new TestStreamLayer(source)]), {
      auth: reader,
    });
    const err = await push.authorized.catch((e: unknown) => e);
    expect(isLadingError(err, 'DENIED')).toBe(true);
    expect(source.bytesRead).toBe(0);
  });

  it('rejects authorized with UNAUTHORIZED for an anonymous push (a token without push scope)', async () => {
    const source = new CountingSource(4);
    const push = write(`${host}/team/app:4`, testImage([new TestStreamLayer(source)]), {
      useStoredCredentials: false,
    });
    expect(isLadingError(await push.authorized.catch((e: unknown) => e), 'UNAUTHORIZED')).toBe(
      true,
    );
    expect(source.bytesRead).toBe(0);
  });

  it('rejects authorized with UNAUTHORIZED for a wrong password at the token endpoint', async () => {
    const source = new CountingSource(4);
    const push = write(`${host}/team/app:3`, testImage([new TestStreamLayer(source)]), {
      auth: { username: 'alice', password: 'nope' },
    });
    expect(isLadingError(await push.authorized.catch((e: unknown) => e), 'UNAUTHORIZED')).toBe(
      true,
    );
    expect(source.bytesRead).toBe(0);
  });

  it('raises chunked uploads to the registry OCI-Chunk-Min-Length', async () => {
    const proxy = await recordingProxy(`http://${host}`);
    try {
      const client = new RegistryClient(proxy.host, { auth: alice });
      const data = randomBytes(180_000);
      const s = await client.openUpload('chunk/min');
      expect(s.minChunkLength).toBe(50_000);
      const r = await s.upload(Readable.from([data]), { mode: 'chunked', chunkSize: 1000 });
      expect(r.digest).toBe(digestOf(data));
      const patches = proxy.requests.filter((q) => q.method === 'PATCH' && q.status === 202);
      expect(patches.map((p) => p.bodyBytes)).toEqual([50_000, 50_000, 50_000, 30_000]);
      expect(patches.map((p) => p.headers['content-range'])).toEqual([
        '0-49999',
        '50000-99999',
        '100000-149999',
        '150000-179999',
      ]);
    } finally {
      await proxy.close();
    }
  });

  it('lists referrers through the referrers API filtered by artifactType', async () => {
    const client = new RegistryClient(host, { auth: alice });
    const subject = testImage([layerFromBytes(Buffer.from('subject'))]);
    const pushed = await write(`${host}/ref/app:1`, subject, { auth: alice }).done;
    const empty = Buffer.from('{}');
    const s = await client.openUpload('ref/app');
    await s.upload(Readable.from([empty]));
    const artifact = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        artifactType: 'application/vnd.example.sbom',
        config: {
          mediaType: 'application/vnd.oci.empty.v1+json',
          digest: digestOf(empty),
          size: 2,
        },
        layers: [
          { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf(empty), size: 2 },
        ],
        subject: { mediaType: pushed.mediaType, digest: pushed.digest, size: pushed.size },
      }),
    );
    await client.putManifest(
      'ref/app',
      digestOf(artifact),
      artifact,
      'application/vnd.oci.image.manifest.v1+json',
    );
    const all = await client.referrers('ref/app', pushed.digest);
    expect(all.map((d) => d.digest)).toEqual([digestOf(artifact)]);
    expect(
      await client.referrers('ref/app', pushed.digest, { artifactType: 'application/other' }),
    ).toEqual([]);
  });
});
