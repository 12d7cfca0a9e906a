import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendLayers,
  copy,
  emptyImage,
  imageIndex,
  layerFromBytes,
  memoryTarget,
  withPlatform,
  writeImageIndex,
  type Descriptor,
} from '@lading/core';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { streamLayer } from '@lading/layers';
import { recordingProxy, singleFileTar } from '@lading/testing';
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

  it('tags the root it just pushed with the bytes it sent, without reading them back', async () => {
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
        'PUT /v2/dst/tagged/manifests/DIGEST 201',
        'PUT /v2/dst/tagged/manifests/v2 201',
      ]);
      const copied = await new RegistryClient(host).getManifest('dst/tagged', 'v2');
      expect(copied.digest).toBe(pushed.digest);
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
