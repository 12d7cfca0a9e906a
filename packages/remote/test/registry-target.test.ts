import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendLayers,
  ErrorCode,
  LadingError,
  copy,
  emptyImage,
  imageIndex,
  layerFromBytes,
  memoryTarget,
  withPlatform,
  writeImage,
  writeImageIndex,
  type Descriptor,
} from '@lading/core';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { streamLayer } from '@lading/layers';
import { recordingProxy, singleFileTar, withFetch } from '@lading/testing';
import { Readable } from 'node:stream';
import { RegistryClient, registryTarget, write, writeIndex as pushIndex } from '../src/index.js';

/** tarLayer is a single-pass stream layer over a one-file tar. */
function tarLayer(name: string, body: string) {
  return streamLayer(Readable.from([singleFileTar(name, Buffer.from(body))]));
}

function layer(text: string) {
  return layerFromBytes(Buffer.from(text.repeat(1000)));
}

describe('registryTarget', () => {
  let registry: Registry;
  let host: string;
  beforeAll(async () => {
    registry = createRegistry({ storage: memoryStorage() });
    const { url } = await registry.listen({ host: '127.0.0.1', port: 0 });
    host = new URL(url).host;
  });
  afterAll(async () => {
    await registry.close();
  });

  it('copies an image between repositories of one registry by mounting its blobs', async () => {
    const image = appendLayers(emptyImage(), layer('a'), layer('b'));
    const pushed = await write(`${host}/src/app:v1`, image).done;
    const mounted: string[] = [];
    const root = await copy(
      registryTarget(`${host}/src/app`),
      'v1',
      registryTarget(`${host}/dst/app`),
      'v1',
      {
        onMounted: (d, from) => mounted.push(`${d.digest}<-${from}`),
      },
    );
    expect(root.digest).toBe(pushed.digest);
    const manifest = await image.manifest();
    // Config and both layers were mounted, nothing re-uploaded.
    expect(mounted.sort()).toEqual(
      [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]
        .map((d) => `${d}<-src/app`)
        .sort(),
    );
    const client = new RegistryClient(host);
    expect((await client.headManifest('dst/app', 'v1'))?.digest).toBe(pushed.digest);
  });

  it('round-trips an index registry → memory → registry keeping every digest', async () => {
    const amd = withPlatform(appendLayers(emptyImage(), layer('x')), {
      os: 'linux',
      architecture: 'amd64',
    });
    const arm = withPlatform(appendLayers(emptyImage(), layer('y')), {
      os: 'linux',
      architecture: 'arm64',
    });
    const index = imageIndex([{ image: amd }, { image: arm }]);
    const mem = memoryTarget();
    const written: Descriptor = await writeImageIndex(mem, 'multi', index);
    const r1 = registryTarget(`${host}/multi/one`);
    const d1 = await copy(mem, 'multi', r1, 'v1');
    expect(d1.digest).toBe(written.digest);
    const back = memoryTarget();
    const d2 = await copy(r1, 'v1', back, 'again');
    expect(d2.digest).toBe(written.digest);
    const r2 = registryTarget(`${host}/multi/two`);
    const d3 = await copy(back, 'again', r2, 'v2');
    expect(d3.digest).toBe(written.digest);
    // Every child made it: each platform manifest resolves in the last repository.
    for (const child of (await index.indexManifest()).manifests) {
      expect(await r2.exists(child)).toBe(true);
    }
  });

  it('copies one platform out of an index when asked', async () => {
    const amd = withPlatform(appendLayers(emptyImage(), layer('p')), {
      os: 'linux',
      architecture: 'amd64',
    });
    const arm = withPlatform(appendLayers(emptyImage(), layer('q')), {
      os: 'linux',
      architecture: 'arm64',
    });
    const mem = memoryTarget();
    await writeImageIndex(mem, 'i', imageIndex([{ image: amd }, { image: arm }]));
    const dst = registryTarget(`${host}/plat/one`);
    const root = await copy(mem, 'i', dst, 'arm', { platform: 'linux/arm64' });
    expect(root.digest).toBe(await arm.digest());
    expect(await dst.exists({ ...root, digest: await amd.digest() })).toBe(false);
  });

  it('writes an index over single-pass stream layers to a registry and to memory', async () => {
    const build = () =>
      imageIndex([
        {
          image: withPlatform(appendLayers(emptyImage(), tarLayer('a', 'amd')), {
            os: 'linux',
            architecture: 'amd64',
          }),
        },
        {
          image: withPlatform(appendLayers(emptyImage(), tarLayer('a', 'arm')), {
            os: 'linux',
            architecture: 'arm64',
          }),
        },
      ]);
    const remote = build();
    const pushed = await pushIndex(`${host}/stream/index:v1`, remote).done;
    expect(pushed.digest).toBe(await remote.digest());
    const client = new RegistryClient(host);
    for (const child of (await remote.indexManifest()).manifests) {
      expect((await client.headManifest('stream/index', child.digest))?.digest).toBe(child.digest);
    }
    // Children are stored by digest only: the index is the one tag.
    expect(await client.listTags('stream/index')).toEqual(['v1']);
    const local = build();
    const desc = await writeImageIndex(memoryTarget(), 'v1', local);
    expect(desc.digest).toBe(pushed.digest);
  });

  it('pushes the root under its tag in one PUT, which stores it by digest too', async () => {
    const image = appendLayers(emptyImage(), layer('t'));
    const pushed = await write(`${host}/src/tagged:v1`, image).done;
    const proxy = await recordingProxy(`http://${host}`);
    try {
      const root = await copy(
        registryTarget(`${host}/src/tagged`),
        'v1',
        registryTarget(`${proxy.host}/dst/tagged`),
        'v2',
      );
      expect(root.digest).toBe(pushed.digest);
      const manifests = proxy.requests
        .filter((r) => r.path.includes('/manifests/'))
        .map((r) => `${r.method} ${r.path.replace(/sha256:[0-9a-f]+/, 'DIGEST')} ${r.status}`);
      expect(manifests).toEqual([
        'HEAD /v2/dst/tagged/manifests/DIGEST 404',
        'PUT /v2/dst/tagged/manifests/v2 201',
      ]);
      const client = new RegistryClient(host);
      expect((await client.getManifest('dst/tagged', 'v2')).digest).toBe(pushed.digest);
      expect((await client.getManifest('dst/tagged', pushed.digest)).digest).toBe(pushed.digest);
    } finally {
      await proxy.close();
    }
  });

  it('copies to a reference that names only a digest without tagging anything', async () => {
    const image = appendLayers(emptyImage(), layer('p'));
    const pushed = await write(`${host}/src/pinned:v1`, image).done;
    const client = new RegistryClient(host);
    for (const repo of ['dst/pinned', 'dst/pinned-again']) {
      const dst = registryTarget(`${host}/${repo}`);
      // The second repository gets the root by copy() first, then by tag().
      if (repo === 'dst/pinned-again')
        await copy(registryTarget(`${host}/src/pinned`), 'v1', dst, undefined);
      const root = await copy(
        registryTarget(`${host}/src/pinned`),
        'v1',
        dst,
        `${host}/${repo}@${pushed.digest}`,
      );
      await dst.tag(root, `${host}/${repo}@${pushed.digest}`);
      expect((await client.getManifest(repo, pushed.digest)).digest).toBe(pushed.digest);
      expect(await client.listTags(repo)).toEqual([]);
    }
    // A full reference with a tag still tags, and one with neither tags latest.
    const dst = registryTarget(`${host}/dst/pinned`);
    await copy(registryTarget(`${host}/src/pinned`), 'v1', dst, `${host}/dst/pinned:v3`);
    await dst.tag(pushed, `${host}/dst/pinned`);
    expect((await client.listTags('dst/pinned')).sort()).toEqual(['latest', 'v3']);
  });

  it('tags a root the destination already has with the bytes it stores', async () => {
    const image = appendLayers(emptyImage(), layer('r'));
    const pushed = await write(`${host}/src/retag:v1`, image).done;
    await copy(
      registryTarget(`${host}/src/retag`),
      'v1',
      registryTarget(`${host}/dst/retag`),
      'v1',
    );
    const proxy = await recordingProxy(`http://${host}`);
    try {
      await copy(
        registryTarget(`${host}/src/retag`),
        'v1',
        registryTarget(`${proxy.host}/dst/retag`),
        'v2',
      );
      const seen = proxy.requests.map(
        (r) => `${r.method} ${r.path.replace(/sha256:[0-9a-f]+/, 'DIGEST')} ${r.status}`,
      );
      // No ping (the HEAD stands in for it) and no GET: the PUT by tag
      // carries the bytes the source's GET by tag brought.
      expect(seen).toEqual([
        'HEAD /v2/dst/retag/manifests/DIGEST 200',
        'PUT /v2/dst/retag/manifests/v2 201',
      ]);
      const copied = await new RegistryClient(host).getManifest('dst/retag', 'v2');
      expect(copied.digest).toBe(pushed.digest);
    } finally {
      await proxy.close();
    }
  });

  it('reads the root of a copy with one GET by tag, and a missing tag fails NOT_FOUND naming it', async () => {
    const image = appendLayers(emptyImage(), layer('g1'));
    const pushed = await write(`${host}/src/getroot:v1`, image).done;
    const proxy = await recordingProxy(`http://${host}`);
    try {
      const root = await copy(
        registryTarget(`${proxy.host}/src/getroot`),
        'v1',
        memoryTarget(),
        'v1',
      );
      expect(root.digest).toBe(pushed.digest);
      const manifests = proxy.requests
        .filter((r) => r.path.includes('/manifests/'))
        .map((r) => `${r.method} ${r.path}`);
      expect(manifests).toEqual(['GET /v2/src/getroot/manifests/v1']);
      const err = await copy(
        registryTarget(`${proxy.host}/src/getroot`),
        'nope',
        memoryTarget(),
        'v1',
      ).catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: ErrorCode.NotFound,
        message: `${proxy.host}/src/getroot:nope not found`,
      });
    } finally {
      await proxy.close();
    }
  });

  it("opens each blob's upload while the blob's GET from the source is in flight", async () => {
    const image = appendLayers(emptyImage(), layer('o1'), layer('o2'));
    const pushed = await write(`${host}/src/overlap:v1`, image).done;
    // The source holds every blob GET until the destination has seen as many
    // upload POSTs as the source has seen blob GETs; a copy that POSTs only
    // after its GET answered leaves each GET to time out instead.
    let posts = 0;
    let gets = 0;
    const waiting = new Set<() => void>();
    const dst = await recordingProxy(`http://${host}`, {
      hold: (r) => {
        if (r.method === 'POST') {
          posts++;
          for (const check of waiting) check();
        }
        return undefined;
      },
    });
    const released: string[] = [];
    const src = await recordingProxy(`http://${host}`, {
      hold: (r) => {
        if (r.method !== 'GET' || !r.path.includes('/blobs/')) return undefined;
        const want = ++gets;
        return new Promise<void>((resolve) => {
          const done = (how: string): void => {
            waiting.delete(check);
            clearTimeout(timer);
            released.push(how);
            resolve();
          };
          const check = (): void => {
            if (posts >= want) done('after the POST');
          };
          const timer = setTimeout(() => {
            done('timed out');
          }, 2000);
          waiting.add(check);
          check();
        });
      },
    });
    try {
      const root = await copy(
        registryTarget(`${src.host}/src/overlap`),
        'v1',
        registryTarget(`${dst.host}/dst/overlap`),
        'v1',
      );
      expect(root.digest).toBe(pushed.digest);
      expect(released).toEqual(['after the POST', 'after the POST', 'after the POST']);
      expect(dst.requests.filter((r) => r.method === 'DELETE')).toEqual([]);
      const copied = await new RegistryClient(host).getManifest('dst/overlap', 'v1');
      expect(copied.digest).toBe(pushed.digest);
    } finally {
      await src.close();
      await dst.close();
    }
  });

  it('cancels the upload it opened for a blob the source fails to give', async () => {
    const image = appendLayers(emptyImage(), layer('gone'));
    const source = memoryTarget();
    await writeImage(source, 'v1', image);
    const missing = (await image.manifest()).layers[0]?.digest;
    // The source lost the layer's bytes: its fetch fails after a moment, once
    // the destination's POST is under way.
    const lossy = withFetch(source, async (d, o, own) => {
      if (d.digest !== missing) return own(d, o);
      await new Promise((r) => setTimeout(r, 50));
      throw new LadingError(ErrorCode.NotFound, `blob ${d.digest} not found`);
    });
    const proxy = await recordingProxy(`http://${host}`);
    try {
      await expect(
        copy(lossy, 'v1', registryTarget(`${proxy.host}/dst/lossy`), 'v1'),
      ).rejects.toMatchObject({ code: 'NOT_FOUND' });
      const opened = proxy.requests.filter((r) => r.method === 'POST' && r.status === 202);
      const cancelled = proxy.requests.filter((r) => r.method === 'DELETE');
      const sessions = (rs: typeof opened): string[] =>
        rs.map((r) => new URL(r.responseHeaders?.location ?? r.path, 'http://x').pathname).sort();
      expect(opened.length).toBeGreaterThan(0);
      // Every session the copy opened and did not commit was cancelled.
      const committed = proxy.requests
        .filter((r) => r.method === 'PUT' && r.path.includes('/blobs/uploads/') && r.status === 201)
        .map((r) => new URL(r.path, 'http://x').pathname);
      expect(sessions(cancelled)).toEqual(sessions(opened).filter((p) => !committed.includes(p)));
      expect(cancelled.length).toBeGreaterThan(0);
      expect(await new RegistryClient(host).headManifest('dst/lossy', 'v1')).toBeUndefined();
    } finally {
      await proxy.close();
    }
  });

  it('answers NOT_FOUND for a missing tag', async () => {
    await expect(registryTarget(`${host}/nothing/here`).resolve('nope')).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  });
});
