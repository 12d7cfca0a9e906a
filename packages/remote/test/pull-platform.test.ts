import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendLayers,
  emptyImage,
  imageIndex,
  isLadingError,
  layerFromBytes,
  withPlatform,
  type Platform,
} from '@lading/core';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { singleFileTar } from '@lading/testing';
import { pull, pullImage, write, writeIndex } from '../src/index.js';

function image(platform: Platform) {
  const layer = layerFromBytes(singleFileTar('arch', Buffer.from(platform.architecture)));
  return withPlatform(appendLayers(emptyImage(), layer), platform);
}

describe('pull with a platform', () => {
  let registry: Registry;
  let host: string;
  const amd = { os: 'linux', architecture: 'amd64' };
  const arm = { os: 'linux', architecture: 'arm64' };
  beforeAll(async () => {
    registry = createRegistry({ storage: memoryStorage() });
    host = new URL((await registry.listen({ host: '127.0.0.1', port: 0 })).url).host;
    const inner = imageIndex([{ image: image(arm), platform: arm }]);
    await writeIndex(
      `${host}/pp/nested:1`,
      imageIndex([{ image: image(amd), platform: amd }, { image: inner }]),
    ).done;
    await write(`${host}/pp/single:1`, image(amd)).done;
  });
  afterAll(async () => {
    await registry.close();
  });

  it('finds linux/arm64/v8 through a nested index whose entry has no variant', async () => {
    const img = await pullImage(`${host}/pp/nested:1`, { platform: 'linux/arm64/v8' });
    expect((await img.configFile()).architecture).toBe('arm64');
  });

  it('fails NOT_FOUND naming the offer, for an index and for a single image alike', async () => {
    for (const ref of [`${host}/pp/nested:1`, `${host}/pp/single:1`]) {
      const err: unknown = await pull(ref, { platform: 'linux/s390x' }).catch((e: unknown) => e);
      expect(isLadingError(err, 'NOT_FOUND'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(
        /^no image for platform linux\/s390x in the (index|image) sha256:[0-9a-f]{64} \(it offers linux\/amd64/,
      );
    }
    const single = await pullImage(`${host}/pp/single:1`, { platform: 'linux/amd64' });
    expect((await single.configFile()).os).toBe('linux');
  });
});
