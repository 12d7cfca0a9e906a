import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  digestOf,
  isLadingError,
  layerFromBytes,
  type Image,
  type Layer,
  type ProgressEvent,
} from '@lading/core';
import {
  recordingProxy,
  startDistributionRegistry,
  type DistributionRegistry,
  type RecordedRequest,
} from '@lading/testing';
import { checkPushPermission, pull, pullImage, write, RemoteImage } from '../src/index.js';
import { CountingSource, TestStreamLayer, testImage } from './helpers.js';

const user = { username: 'bob', password: 'correct horse' };

function blobPut(r: RecordedRequest): boolean {
  return r.method === 'PUT' && r.path.includes('/blobs/uploads/');
}

describe('write() against the CNCF distribution registry', () => {
  let open: DistributionRegistry;
  let locked: DistributionRegistry;
  beforeAll(async () => {
    [open, locked] = await Promise.all([
      startDistributionRegistry(),
      startDistributionRegistry({ htpasswd: user }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([open.stop(), locked.stop()]);
  });

  it('pushes stream and bytes layers and pulls them back bit for bit', async () => {
    const s1 = new CountingSource(20, 32 * 1024, 7);
    const s2 = new CountingSource(5, 10_000, 9);
    const l1 = new TestStreamLayer(s1);
    const l2 = new TestStreamLayer(s2);
    const l3 = layerFromBytes(Buffer.from('a small tar-ish payload'));
    const image = testImage([l1, l2, l3]);
    const events: ProgressEvent[] = [];
    const push = write(`${locked.host}/round/trip:v1`, image, { auth: user });
    push.on('progress', (e) => events.push(e));
    await push.authorized;
    const result = await push.done;
    expect(result.digest).toBe(await image.digest());
    expect(result.reference).toBe(`${locked.host}/round/trip@${result.digest}`);
    expect(events.some((e) => e.type === 'manifest-done')).toBe(true);

    const pulled = await pullImage(`${locked.host}/round/trip:v1`, { auth: user });
    expect(pulled).toBeInstanceOf(RemoteImage);
    expect(
      Buffer.from(await pulled.rawManifest()).equals(Buffer.from(await image.rawManifest())),
    ).toBe(true);
    expect(Buffer.from(await pulled.rawConfig()).equals(Buffer.from(await image.rawConfig()))).toBe(
      true,
    );
    const layers = await pulled.layers();
    for (const [i, layer] of layers.entries()) {
      const bytes = await buffer(layer.compressed());
      const original = [l1, l2, l3][i]!;
      expect(digestOf(bytes)).toBe(await original.digest());
      expect(await layer.diffId()).toBe(await original.diffId());
    }
    const tar = await buffer(layers[2]!.uncompressed());
    expect(tar.toString()).toBe('a small tar-ish payload');
  });

  it('rejects authorized with UNAUTHORIZED before a single layer byte is read when the password is wrong', async () => {
    const source = new CountingSource(10);
    const layer = new TestStreamLayer(source);
    const push = write(`${locked.host}/denied/app:1`, testImage([layer]), {
      auth: { username: 'bob', password: 'wrong' },
    });
    const err = await push.authorized.catch((e: unknown) => e);
    expect(isLadingError(err, 'UNAUTHORIZED')).toBe(true);
    expect(source.bytesRead).toBe(0);
    expect(layer.compressedCalls).toBe(0);
    const done = await push.done.catch((e: unknown) => e);
    expect(isLadingError(done, 'UNAUTHORIZED')).toBe(true);
    expect(source.bytesRead).toBe(0);
  });

  it('never crashes when authorized and done reject and nobody awaits them', async () => {
    const push = write(
      `${locked.host}/x/y:1`,
      testImage([new TestStreamLayer(new CountingSource(1))]),
      {
        useStoredCredentials: false,
      },
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(
      await push.done.then(
        () => 'ok',
        (e: unknown) => (e as { code?: string }).code,
      ),
    ).toBe('UNAUTHORIZED');
  });

  it('checkPushPermission resolves with the right credentials and rejects without', async () => {
    await checkPushPermission(`${locked.host}/perm/check:1`, { auth: user });
    const err = await checkPushPermission(`${locked.host}/perm/check:1`, {
      useStoredCredentials: false,
    }).catch((e: unknown) => e);
    expect(isLadingError(err, 'UNAUTHORIZED')).toBe(true);
  });

  it('opens sessions before layer bytes, sends the config once every layer was sent and the manifest last', async () => {
    const proxy = await recordingProxy(open.url);
    try {
      const sources = [
        new CountingSource(8, 16 * 1024, 1),
        new CountingSource(3, 16 * 1024, 2),
        new CountingSource(12, 16 * 1024, 3),
      ];
      const layers: Layer[] = sources.map((s) => new TestStreamLayer(s));
      const image = testImage(layers);
      const push = write(`${proxy.host}/order/app:latest`, image, { jobs: 2 });
      const result = await push.done;
      const reqs = proxy.requests;
      const posts = reqs.filter((r) => r.method === 'POST');
      expect(posts.length).toBe(4); // config + 3 layers
      const patches = reqs.filter((r) => r.method === 'PATCH');
      expect(patches.length).toBe(3);
      for (const p of patches) {
        const post = posts.find((q) => {
          const loc = new URL(q.responseHeaders!.location!);
          return loc.pathname === new URL(p.path, proxy.url).pathname;
        });
        expect(post).toBeDefined();
        expect(p.firstByteTick!).toBeGreaterThan(post!.responseTick!);
      }
      // every session was opened before any layer byte was sent
      const firstByte = Math.min(...patches.map((p) => p.firstByteTick!));
      for (const post of posts) expect(post.responseTick!).toBeLessThan(firstByte);
      const configDigest = digestOf(await image.rawConfig());
      const puts = reqs.filter(blobPut);
      const configPut = puts.find(
        (r) => new URL(r.path, proxy.url).searchParams.get('digest') === configDigest,
      )!;
      const layerPuts = puts.filter((r) => r !== configPut);
      expect(layerPuts.length).toBe(3);
      // the config goes once every layer's bytes went (its diffIds are known then)
      for (const p of patches) expect(configPut.startTick).toBeGreaterThan(p.firstByteTick!);
      const manifestPut = reqs.find((r) => r.method === 'PUT' && r.path.includes('/manifests/'))!;
      for (const r of reqs)
        if (r !== manifestPut) expect(manifestPut.startTick).toBeGreaterThan(r.responseTick!);
      expect(manifestPut.path).toBe('/v2/order/app/manifests/latest');
      expect(result.digest).toBe(await image.digest());
    } finally {
      await proxy.close();
    }
  });

  it('sends the config while the registry still answers the layers, never before their bytes', async () => {
    // Each layer's PATCH is held at the proxy until the config's PUT
    // arrived (or 10 s passed): a config that waited for the layers to be
    // stored would arrive only after that.
    let configSeen!: () => void;
    const seen = new Promise<void>((resolve) => {
      configSeen = resolve;
    });
    const proxy = await recordingProxy(open.url, {
      hold: (r) => {
        if (r.method === 'PUT' && r.path.includes('digest=')) configSeen();
        if (r.method !== 'PATCH') return undefined;
        return Promise.race([seen, new Promise((resolve) => setTimeout(resolve, 10_000))]);
      },
    });
    try {
      const layers: Layer[] = [
        new TestStreamLayer(new CountingSource(3, 16 * 1024, 4)),
        new TestStreamLayer(new CountingSource(2, 16 * 1024, 5)),
      ];
      const image = testImage(layers);
      const started = performance.now();
      const result = await write(`${proxy.host}/early/config:1`, image).done;
      expect(performance.now() - started).toBeLessThan(8_000);
      expect(result.digest).toBe(await image.digest());
      const reqs = proxy.requests;
      const configDigest = digestOf(await image.rawConfig());
      const configPut = reqs.find(
        (r) => blobPut(r) && new URL(r.path, proxy.url).searchParams.get('digest') === configDigest,
      )!;
      const patches = reqs.filter((r) => r.method === 'PATCH');
      expect(patches.length).toBe(2);
      for (const p of patches) {
        expect(configPut.startTick).toBeLessThan(p.responseTick!);
        expect(p.bodyBytes).toBeGreaterThan(0);
      }
      const manifestPut = reqs.find((r) => r.method === 'PUT' && r.path.includes('/manifests/'))!;
      for (const r of reqs)
        if (r !== manifestPut) expect(manifestPut.startTick).toBeGreaterThan(r.responseTick!);
      const pulled = await pullImage(`${open.host}/early/config:1`);
      expect(await pulled.digest()).toBe(result.digest);
    } finally {
      await proxy.close();
    }
  });

  it('uploads a small layer of known size in one PUT and a stream layer with PATCH then PUT', async () => {
    const proxy = await recordingProxy(open.url);
    try {
      const small = layerFromBytes(Buffer.from('small and known'));
      const streamed = new TestStreamLayer(new CountingSource(2));
      await write(`${proxy.host}/modes/app:1`, testImage([small, streamed])).done;
      const patches = proxy.requests.filter((r) => r.method === 'PATCH');
      expect(patches.length).toBe(1);
      const smallDigest = await small.digest();
      const smallPut = proxy.requests.find(
        (r) =>
          r.method === 'PUT' &&
          new URL(r.path, proxy.url).searchParams.get('digest') === smallDigest,
      )!;
      expect(smallPut.bodyBytes).toBe(await small.size());
    } finally {
      await proxy.close();
    }
  });

  it('writes no manifest and cancels open sessions when a layer fails', async () => {
    const proxy = await recordingProxy(open.url);
    try {
      const boom = new Error('source exploded');
      const failing = new Readable({
        read() {
          this.destroy(boom);
        },
      });
      const slow = new CountingSource(4, 8 * 1024);
      const image = testImage([new TestStreamLayer(slow), new TestStreamLayer(failing)]);
      const push = write(`${proxy.host}/fail/app:1`, image, { jobs: 1 });
      const err = await push.done.catch((e: unknown) => e);
      expect(err).toBe(boom);
      expect(proxy.requests.some((r) => r.path.includes('/manifests/'))).toBe(false);
      // every session the registry opened was either committed or cancelled
      const pathOf = (p: string): string => new URL(p, proxy.url).pathname;
      const opened = proxy.requests
        .filter((r) => r.method === 'POST' && r.status === 202)
        .map((r) => new URL(r.responseHeaders!.location!).pathname);
      const closed = proxy.requests
        .filter(
          (r) =>
            (r.method === 'DELETE' && r.status === 204) || (r.method === 'PUT' && r.status === 201),
        )
        .map((r) => pathOf(r.path));
      expect(opened.length).toBe(3);
      for (const o of opened) expect(closed).toContain(o);
      expect(proxy.requests.filter((r) => r.method === 'DELETE').length).toBeGreaterThanOrEqual(2);
    } finally {
      await proxy.close();
    }
  });

  it('cancels everything with ABORTED when the signal fires', async () => {
    const proxy = await recordingProxy(open.url);
    try {
      const ac = new AbortController();
      const endless = new Readable({
        read() {
          setTimeout(() => this.push(randomBytes(4096)), 2);
        },
      });
      const push = write(`${proxy.host}/abort/app:1`, testImage([new TestStreamLayer(endless)]), {
        signal: ac.signal,
      });
      push.on('progress', (e) => {
        if (e.type === 'blob-progress' && e.bytes > 10_000) ac.abort();
      });
      const err = await push.done.catch((e: unknown) => e);
      expect(isLadingError(err, 'ABORTED')).toBe(true);
      expect(proxy.requests.some((r) => r.path.includes('/manifests/'))).toBe(false);
      expect(proxy.requests.filter((r) => r.method === 'DELETE').length).toBeGreaterThanOrEqual(2);
    } finally {
      await proxy.close();
    }
  });

  it('mounts or skips the base layers of a pulled image instead of downloading them', async () => {
    const base = testImage([
      layerFromBytes(Buffer.from('base layer one')),
      layerFromBytes(Buffer.from('base layer two')),
    ]);
    await write(`${open.host}/base/img:1`, base).done;
    const proxy = await recordingProxy(open.url);
    try {
      const pulled = await pull(`${proxy.host}/base/img:1`);
      const baseLayers = await (pulled as Image).layers();
      const top = new TestStreamLayer(new CountingSource(2));
      const derived = testImage([...baseLayers, top]);
      const events: ProgressEvent[] = [];
      const push = write(`${proxy.host}/derived/img:1`, derived);
      push.on('progress', (e) => events.push(e));
      await push.done;
      const blobGets = proxy.requests.filter(
        (r) => r.method === 'GET' && r.path.includes('/blobs/sha256:'),
      );
      // the base config is read (for diffIds), no base layer is downloaded
      const layerDigests = await Promise.all(baseLayers.map((l) => l.digest()));
      for (const g of blobGets)
        for (const d of layerDigests) expect(g.path.includes(d)).toBe(false);
      expect(events.filter((e) => e.type === 'blob-mounted').length).toBe(2);
      // writing back to the same repository skips them
      const again = write(`${proxy.host}/base/img:2`, testImage(baseLayers));
      const skipped: ProgressEvent[] = [];
      again.on('progress', (e) => skipped.push(e));
      await again.done;
      expect(skipped.filter((e) => e.type === 'blob-skipped').length).toBe(2);
      const pulledBack = await pullImage(`${open.host}/derived/img:1`);
      expect(await pulledBack.digest()).toBe(await derived.digest());
    } finally {
      await proxy.close();
    }
  });
});
