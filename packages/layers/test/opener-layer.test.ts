import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { digestOf, layerFromBytes, MediaType, zstdAvailable } from '@lading/core';
import { ownDigest } from '@lading/core/internal';
import { layerFromFile, layerFromOpener } from '../src/index.js';
import { collect, isPending, makeTar, pseudoRandom, tempDir, textish } from './helpers.js';

async function sampleTar(): Promise<Buffer> {
  return makeTar([
    { name: 'a.txt', body: textish(400_000) },
    { name: 'b.bin', body: pseudoRandom(300_000) },
  ]);
}

describe('layerFromOpener', () => {
  it('runs its own hashing pass when digest() is awaited with no consumer, and memoizes', async () => {
    const tar = await sampleTar();
    let opens = 0;
    const layer = layerFromOpener(() => {
      opens++;
      return Readable.from([tar]);
    });
    const bytes = layerFromBytes(tar);
    expect(layer.knownDescriptor()).toBeUndefined();
    expect(await layer.digest()).toBe(await bytes.digest());
    expect(await layer.diffId()).toBe(await bytes.diffId());
    expect(await layer.size()).toBe(await bytes.size());
    expect(opens).toBe(1);
    expect(layer.knownDescriptor()).toEqual(bytes.knownDescriptor!());
    // Re-openable: reads again, same bytes as the bytes layer.
    const blob = await collect(layer.compressed());
    expect(blob.equals(await collect(bytes.compressed()))).toBe(true);
    expect(opens).toBe(2);
    expect((await collect(layer.uncompressed())).equals(tar)).toBe(true);
  });

  it('waits on a consumer pass in flight instead of opening again', async () => {
    const tar = await sampleTar();
    let opens = 0;
    const layer = layerFromOpener(async () => {
      opens++;
      await Promise.resolve();
      return Readable.from([tar]);
    });
    const s = layer.compressed();
    const d = layer.digest();
    expect(await isPending(d)).toBe(true);
    await collect(s);
    expect(await d).toBe(await layerFromBytes(tar).digest());
    expect(opens).toBe(1);
  });

  it('rejects a failed pass and succeeds when retried', async () => {
    const tar = await sampleTar();
    let attempt = 0;
    const layer = layerFromOpener(() => {
      attempt++;
      if (attempt === 1) {
        return Readable.from(
          (async function* () {
            yield tar.subarray(0, 1000);
            await Promise.resolve();
            throw new Error('flaky source');
          })(),
        );
      }
      return Readable.from([tar]);
    });
    await expect(layer.digest()).rejects.toThrow('flaky source');
    expect(layer.knownDescriptor()).toBeUndefined();
    expect(await layer.digest()).toBe(await layerFromBytes(tar).digest());
    expect(attempt).toBe(2);
  });

  it('fails the stream when the opener throws', async () => {
    const layer = layerFromOpener(() => Promise.reject(new Error('cannot open')));
    await expect(collect(layer.compressed())).rejects.toThrow('cannot open');
  });

  it('passes a compressed source through untouched', async () => {
    const tar = await sampleTar();
    const bytes = layerFromBytes(tar);
    const gz = await collect(bytes.compressed());
    const layer = layerFromOpener(() => Readable.from([gz]), { compressed: true });
    expect((await collect(layer.compressed())).equals(gz)).toBe(true);
    expect(await layer.diffId()).toBe(await bytes.diffId());
  });
});

describe('a layer pass', () => {
  it('states the digest and size of exactly the bytes its compressed stream yielded, for gzip, zstd and none', async () => {
    const tar = await sampleTar();
    // (zstd where the runtime has it: Node ≥ 22.15)
    const kinds = zstdAvailable()
      ? (['gzip', 'zstd', 'none'] as const)
      : (['gzip', 'none'] as const);
    for (const compression of kinds) {
      const layer = layerFromOpener(() => Readable.from([tar]), { compression, workers: 2 });
      const stream = layer.compressed();
      const stated = ownDigest(stream);
      expect(stated).toBeDefined();
      const blob = await collect(stream);
      expect(await stated?.()).toEqual({ digest: digestOf(blob), size: blob.length });
      expect(await layer.digest()).toBe(digestOf(blob));
    }
  });

  it('states nothing for its uncompressed stream, and rejects the stated digest when the pass fails', async () => {
    const tar = await sampleTar();
    const layer = layerFromOpener(() => Readable.from([tar]));
    const plain = layer.uncompressed();
    expect(ownDigest(plain)).toBeUndefined();
    await collect(plain);
    const cut = layerFromOpener(() => Readable.from([tar.subarray(0, 1000)]));
    const stream = cut.compressed();
    const stated = ownDigest(stream);
    await expect(collect(stream)).rejects.toMatchObject({ code: 'INVALID_LAYER' });
    await expect(stated?.()).rejects.toMatchObject({ code: 'INVALID_LAYER' });
  });
});

describe('layerFromFile', () => {
  it('fails with typed errors: NOT_FOUND for a missing file, INVALID_LAYER for bad gzip', async () => {
    const tar = await sampleTar();
    const gz = await collect(layerFromBytes(tar).compressed());
    const dir = tempDir('lading-file-bad-');
    writeFileSync(join(dir, 'cut.tgz'), gz.subarray(0, 150));
    writeFileSync(join(dir, 'junk.tgz'), Buffer.from([0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    const missing = join(dir, 'nope.tar');
    await expect(layerFromFile(missing).digest()).rejects.toMatchObject({
      code: 'NOT_FOUND',
      path: missing,
    });
    for (const name of ['cut.tgz', 'junk.tgz']) {
      const layer = layerFromFile(join(dir, name));
      await expect(layer.digest(), name).rejects.toMatchObject({ code: 'INVALID_LAYER' });
      // a consumer of the stream sees the same typed error
      await expect(collect(layerFromFile(join(dir, name)).uncompressed())).rejects.toMatchObject({
        code: 'INVALID_LAYER',
      });
    }
  });

  it('detects tar and tar.gz files by their magic bytes', async () => {
    const tar = await sampleTar();
    const bytes = layerFromBytes(tar);
    const gz = await collect(bytes.compressed());
    const dir = tempDir('lading-file-');
    writeFileSync(join(dir, 'l.tar'), tar);
    writeFileSync(join(dir, 'l.tgz'), gz);
    const a = layerFromFile(join(dir, 'l.tar'));
    const b = layerFromFile(join(dir, 'l.tgz'));
    expect(await a.digest()).toBe(await bytes.digest());
    expect(await b.digest()).toBe(await bytes.digest());
    expect(await b.diffId()).toBe(await bytes.diffId());
    expect((await collect(b.compressed())).equals(gz)).toBe(true);
    expect(a.mediaType).toBe(MediaType.OciLayerGzip);
    const plain = layerFromFile(join(dir, 'l.tar'), { compression: 'none' });
    expect(plain.mediaType).toBe(MediaType.OciLayer);
    expect(await plain.digest()).toBe(await bytes.diffId());
    const gzNone = layerFromFile(join(dir, 'l.tgz'), { compression: 'none' });
    expect(gzNone.mediaType).toBe(MediaType.OciLayerGzip);
  });
});
