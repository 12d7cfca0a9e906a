import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { isLadingError, layerFromBytes } from '@lading/core';
import { streamLayer } from '../src/index.js';
import { collect, isPending, makeTar, pseudoRandom, run, textish } from './helpers.js';

async function sampleTar(): Promise<Buffer> {
  return makeTar([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/motd', body: textish(300_000) },
    { name: 'bin/blob', body: pseudoRandom(700_000) },
    { name: 'bin/link', type: 'symlink', linkname: 'blob' },
  ]);
}

function chunked(buf: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

describe('streamLayer', () => {
  it('gives the same digest, diffId and size as layerFromBytes when fed the same tar', async () => {
    const tar = await sampleTar();
    const bytes = layerFromBytes(tar);
    const layer = streamLayer(chunked(tar, 7777));
    const blob = await collect(layer.compressed());
    expect(await layer.digest()).toBe(await bytes.digest());
    expect(await layer.diffId()).toBe(await bytes.diffId());
    expect(await layer.size()).toBe(await bytes.size());
    expect(blob.length).toBe(await bytes.size());
    expect(gunzipSync(blob).equals(tar)).toBe(true);
    expect(layer.mediaType).toBe(bytes.mediaType);
  });

  it('accepts an async iterable source', async () => {
    const tar = await sampleTar();
    async function* gen() {
      for (let i = 0; i < tar.length; i += 65536) {
        yield tar.subarray(i, i + 65536);
        await Promise.resolve();
      }
    }
    const layer = streamLayer(gen());
    await collect(layer.compressed());
    expect(await layer.diffId()).toBe(await layerFromBytes(tar).diffId());
  });

  it('passes an already-gzipped source through untouched and computes its diffId on the side', async () => {
    const tar = await sampleTar();
    const bytes = layerFromBytes(tar);
    const gz = await collect(bytes.compressed());
    const layer = streamLayer(chunked(gz, 1000), { compressed: true });
    const blob = await collect(layer.compressed());
    expect(blob.equals(gz)).toBe(true);
    expect(await layer.digest()).toBe(await bytes.digest());
    expect(await layer.diffId()).toBe(await bytes.diffId());
    expect(await layer.size()).toBe(gz.length);
  });

  it('makes the blob the tar when compression is none', async () => {
    const tar = await sampleTar();
    const layer = streamLayer(chunked(tar, 4096), { compression: 'none' });
    const blob = await collect(layer.compressed());
    expect(blob.equals(tar)).toBe(true);
    const bytes = layerFromBytes(tar, { compression: 'none' });
    expect(await layer.digest()).toBe(await bytes.digest());
    expect(await layer.diffId()).toBe(await layer.digest());
    expect(layer.mediaType).toBe(bytes.mediaType);
  });

  it('keeps digest, diffId and size pending while the stream is only partly read', async () => {
    const tar = await sampleTar();
    const layer = streamLayer(chunked(tar, 16384));
    const d = layer.digest();
    expect(layer.digest()).toBe(d);
    expect(layer.knownDescriptor()).toBeUndefined();
    const s = layer.compressed();
    // Read a single chunk, then stop reading.
    await new Promise<void>((resolve) => {
      s.once('readable', () => {
        resolve();
      });
    });
    expect(s.read(1)).not.toBeNull();
    await new Promise((r) => setTimeout(r, 50));
    expect(await isPending(d)).toBe(true);
    expect(await isPending(layer.diffId())).toBe(true);
    expect(await isPending(layer.size())).toBe(true);
    expect(layer.digest()).toBe(d);
    const rest = await collect(s);
    expect(rest.length).toBeGreaterThan(0);
    expect(await d).toMatch(/^sha256:/);
    expect(layer.knownDescriptor()).toEqual({
      mediaType: layer.mediaType,
      digest: await d,
      size: await layer.size(),
    });
  });

  it('rejects all three with the source error when the source fails', async () => {
    const boom = new Error('source broke');
    async function* gen() {
      yield Buffer.alloc(100_000, 1);
      await Promise.resolve();
      throw boom;
    }
    const layer = streamLayer(gen());
    await expect(collect(layer.compressed())).rejects.toThrow('source broke');
    await expect(layer.digest()).rejects.toBe(boom);
    await expect(layer.diffId()).rejects.toBe(boom);
    await expect(layer.size()).rejects.toBe(boom);
    expect(layer.knownDescriptor()).toBeUndefined();
  });

  it('rejects with an error the source raised before anyone read it', async () => {
    const src = new Readable({ read: () => undefined });
    const boom = new Error('early failure');
    const layer = streamLayer(src);
    src.destroy(boom);
    await new Promise((r) => setTimeout(r, 10));
    await expect(collect(layer.compressed())).rejects.toBe(boom);
    await expect(layer.digest()).rejects.toBe(boom);
  });

  it('rejects when the consumer destroys the stream before its end', async () => {
    const tar = await sampleTar();
    const layer = streamLayer(chunked(tar, 16384));
    const s = layer.compressed();
    await new Promise<void>((resolve) => {
      s.once('readable', () => {
        resolve();
      });
    });
    const err = new Error('consumer gave up');
    s.destroy(err);
    await expect(layer.digest()).rejects.toBe(err);
    await expect(layer.size()).rejects.toBe(err);
  });

  it('rejects with a premature-close error when destroyed without an error', async () => {
    const tar = await sampleTar();
    const layer = streamLayer(chunked(tar, 16384));
    const s = layer.compressed();
    s.destroy();
    await expect(layer.diffId()).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
  });

  it('throws LAYER_CONSUMED on a second read', async () => {
    const tar = await sampleTar();
    const layer = streamLayer(chunked(tar, 16384));
    const s = layer.compressed();
    let caught: unknown;
    try {
      layer.compressed();
    } catch (e) {
      caught = e;
    }
    expect(isLadingError(caught, 'LAYER_CONSUMED')).toBe(true);
    expect(() => layer.uncompressed()).toThrow(expect.objectContaining({ code: 'LAYER_CONSUMED' }));
    await collect(s);
  });

  it('settles all three values after uncompressed() is read (the blob is gzipped on the side)', async () => {
    const tar = await sampleTar();
    const layer = streamLayer(chunked(tar, 10000));
    const out = await collect(layer.uncompressed());
    expect(out.equals(tar)).toBe(true);
    const bytes = layerFromBytes(tar);
    expect(await layer.digest()).toBe(await bytes.digest());
    expect(await layer.size()).toBe(await bytes.size());
    expect(() => layer.compressed()).toThrow(expect.objectContaining({ code: 'LAYER_CONSUMED' }));
  });

  it('gunzips a compressed source for uncompressed()', async () => {
    const tar = await sampleTar();
    const bytes = layerFromBytes(tar);
    const gz = await collect(bytes.compressed());
    const layer = streamLayer(chunked(gz, 3000), { compressed: true });
    expect((await collect(layer.uncompressed())).equals(tar)).toBe(true);
    expect(await layer.digest()).toBe(await bytes.digest());
    expect(await layer.size()).toBe(gz.length);
  });

  it('does not raise unhandled rejections for promises nobody awaits', async () => {
    const seen: unknown[] = [];
    const onUnhandled = (reason: unknown) => seen.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      async function* gen() {
        yield Buffer.alloc(10, 1);
        await Promise.resolve();
        throw new Error('nobody listens');
      }
      const layer = streamLayer(gen());
      // Ask for the promises but never await them.
      void layer.digest();
      void layer.diffId();
      void layer.size();
      await expect(collect(layer.compressed())).rejects.toThrow('nobody listens');
      const other = streamLayer(gen());
      other.compressed().destroy(new Error('dropped'));
      await new Promise((r) => setTimeout(r, 100));
      expect(seen).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('produces output GNU gzip and tar accept', async () => {
    const tar = await sampleTar();
    const blob = await collect(streamLayer(chunked(tar, 5000)).compressed());
    const g = await run('gzip', ['-t'], blob);
    expect(g.code).toBe(0);
    const t = await run('tar', ['-tzvf', '-'], blob);
    expect(t.code).toBe(0);
    expect(t.stdout).toContain('etc/motd');
    expect(t.stdout).toContain('bin/link -> blob');
  });
});
