import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { scratchDirs } from '@lading/testing';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  appendLayers,
  copy,
  emptyImage,
  imageIndex,
  layerFromBytes,
  memoryTarget,
  successors,
  withPlatform,
  writeImage,
  writeImageIndex,
  type ConfigFile,
  type Descriptor,
  type Target,
} from '@lading/core';
import { streamLayer } from '@lading/layers';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { registryTarget } from '@lading/remote';
import { dockerArchive, ociLayout } from '../src/index.js';
import { run, tarOf } from './helpers.js';

const dirs = scratchDirs('lading-layout-test-');
afterEach(() => dirs.removeAll());
const scratch = (): Promise<string> => dirs.make();

async function configOf(target: Target, root: Descriptor): Promise<[Descriptor, ConfigFile]> {
  const [config] = await successors(target, root);
  const chunks: Buffer[] = [];
  for await (const c of await target.fetch(config!)) chunks.push(c as Buffer);
  return [config!, JSON.parse(Buffer.concat(chunks).toString('utf8')) as ConfigFile];
}

describe('registry → layout → archive → memory → registry', () => {
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

  it('keeps the config digest and diffIds along the whole chain', async () => {
    const dir = await scratch();
    const image = appendLayers(
      emptyImage(),
      streamLayer(Readable.from([await tarOf({ 'etc/motd': 'hello from a stream\n' })])),
      layerFromBytes(await tarOf({ 'usr/bin/tool': Buffer.alloc(20_000, 3) })),
    );
    const source = registryTarget(`${host}/chain/src`);
    const pushed = await writeImage(source, 'v1', image);
    const [config0, file0] = await configOf(source, pushed);

    const layout = ociLayout(join(dir, 'layout'));
    const inLayout = await copy(source, 'v1', layout, 'v1');
    // registry → layout keeps every digest, and skopeo agrees
    expect(inLayout.digest).toBe(pushed.digest);
    const inspect = await run('skopeo', ['inspect', `oci:${join(dir, 'layout')}:v1`]);
    expect((JSON.parse(inspect.stdout) as { Digest: string }).Digest).toBe(pushed.digest);

    const file = join(dir, 'chain.tar');
    const archive = dockerArchive(file, { mode: 'write' });
    await copy(layout, 'v1', archive, 'chain/app:v1');
    await archive.close();

    const mem = memoryTarget();
    const inMemory = await copy(dockerArchive(file), 'chain/app:v1', mem, 'v1');
    const [config2, file2] = await configOf(mem, inMemory);
    expect(config2.digest).toBe(config0.digest);
    expect(file2.rootfs.diff_ids).toEqual(file0.rootfs.diff_ids);

    const back = registryTarget(`${host}/chain/back`);
    const final = await copy(mem, 'v1', back, 'v2');
    expect((await back.resolve('v2')).digest).toBe(final.digest);
    const [config3, file3] = await configOf(back, await back.resolve('v2'));
    expect(config3.digest).toBe(config0.digest);
    expect(file3.rootfs.diff_ids).toEqual(file0.rootfs.diff_ids);
    // the archive stored layers uncompressed: layer digests are now the diffIds
    const layers = (await successors(back, final)).slice(1);
    expect(layers.map((l) => l.digest)).toEqual(file0.rootfs.diff_ids);
  });

  it('moves a multi-platform index into a layout intact and one platform into an archive', async () => {
    const dir = await scratch();
    const amd = withPlatform(
      appendLayers(emptyImage(), layerFromBytes(await tarOf({ a: 'amd' }))),
      {
        os: 'linux',
        architecture: 'amd64',
      },
    );
    const arm = withPlatform(
      appendLayers(emptyImage(), layerFromBytes(await tarOf({ a: 'arm' }))),
      {
        os: 'linux',
        architecture: 'arm64',
      },
    );
    const index = imageIndex([{ image: amd }, { image: arm }]);
    const source = registryTarget(`${host}/chain/multi`);
    const pushed = await writeImageIndex(source, 'v1', index);
    const layout = ociLayout(join(dir, 'layout'));
    expect((await copy(source, 'v1', layout, 'v1')).digest).toBe(pushed.digest);
    const file = join(dir, 'arm.tar');
    const archive = dockerArchive(file, { mode: 'write' });
    const root = await copy(layout, 'v1', archive, 'multi:arm', { platform: 'linux/arm64' });
    await archive.close();
    expect(root.digest).toBe(await arm.digest());
    const { stdout } = await run('skopeo', ['inspect', '--config', `docker-archive:${file}`]);
    expect((JSON.parse(stdout) as { architecture: string }).architecture).toBe('arm64');
  });
});
