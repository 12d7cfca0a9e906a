import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import {
  MediaType,
  appendLayers,
  copy,
  emptyImage,
  layerFromBytes,
  memoryTarget,
  writeImage,
  zstdAvailable,
  type ConfigFile,
} from '@lading/core';
import { dockerArchive } from '../src/index.js';
import { run, tarOf, tempDir } from './helpers.js';

describe('dockerArchive with zstd layers', () => {
  it('stores a zstd layer as its plain tar (diffId kept), or fails UNSUPPORTED without zstd in Node', async () => {
    const tar = await tarOf({ 'etc/hello': 'hello from zstd\n'.repeat(1000) });
    if (!zstdAvailable()) {
      expect(() => layerFromBytes(tar, { compression: 'zstd' })).toThrow(
        expect.objectContaining({ code: 'UNSUPPORTED' }),
      );
      return;
    }
    const layer = layerFromBytes(tar, { compression: 'zstd' });
    expect(layer.mediaType).toBe(MediaType.OciLayerZstd);
    const image = appendLayers(emptyImage(), layer);
    const { dir, cleanup } = await tempDir();
    try {
      const file = join(dir, 'image.tar');
      const out = dockerArchive(file, { mode: 'write' });
      await writeImage(out, 'zstd/app:v1', image);
      await out.close();
      const back = dockerArchive(file);
      const mem = memoryTarget();
      await copy(back, 'zstd/app:v1', mem, 'x');
      const config = await image.configFile();
      expect(config.rootfs.diff_ids).toEqual([await layer.diffId()]);
      // docker-archive readers (skopeo) see the layer as the plain tar.
      const { stdout } = await run('skopeo', ['inspect', '--config', `docker-archive:${file}`]);
      const seen = JSON.parse(stdout) as ConfigFile;
      expect(seen.rootfs.diff_ids).toEqual([await layer.diffId()]);
    } finally {
      await cleanup();
    }
  });
});
