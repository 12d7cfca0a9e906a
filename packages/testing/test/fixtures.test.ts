import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { digestOf, validateImage } from '@lading/core';
import {
  OnceLayer,
  TextSink,
  basicAuth,
  filesTar,
  lazyImage,
  scratchDir,
  scratchDirs,
  singleFileTar,
} from '../src/index.js';

async function drain(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setTimeout(r, 20));
  return done;
}

describe('OnceLayer', () => {
  it('keeps digest, diffId and size pending until compressed() is read to its end', async () => {
    const tar = singleFileTar('a', Buffer.from('hello'));
    const layer = new OnceLayer(tar);
    expect(await settled(layer.digest())).toBe(false);
    const gz = await drain(layer.compressed());
    expect(gunzipSync(gz)).toEqual(tar);
    expect(await layer.digest()).toBe(digestOf(gz));
    expect(await layer.size()).toBe(gz.length);
    expect(await layer.diffId()).toBe(digestOf(tar));
  });

  it('throws on a second compressed() call', async () => {
    const layer = new OnceLayer(singleFileTar('a', Buffer.from('x')));
    await drain(layer.compressed());
    expect(() => layer.compressed()).toThrow('consumed');
  });

  it('errors the stream and rejects its values when built with fail', async () => {
    const layer = new OnceLayer(singleFileTar('a', Buffer.from('x')), { fail: true });
    await expect(drain(layer.compressed())).rejects.toThrow('source failed');
    await expect(layer.digest()).rejects.toThrow('source failed');
    await expect(layer.size()).rejects.toThrow('source failed');
  });
});

describe('lazyImage', () => {
  it('builds a valid image over pending layers once they have been read', async () => {
    const layers = [
      new OnceLayer(filesTar([{ name: 'a', body: Buffer.from('1') }])),
      new OnceLayer(filesTar([{ name: 'b', body: Buffer.from('2') }])),
    ];
    const image = lazyImage(layers, { os: 'linux', architecture: 'arm64' });
    expect(await settled(image.manifest())).toBe(false);
    for (const layer of layers) await drain(layer.compressed());
    const config = await image.configFile();
    expect(config.architecture).toBe('arm64');
    expect(config.history).toHaveLength(2);
    expect((await image.manifest()).layers.map((l) => l.digest)).toEqual(
      await Promise.all(layers.map((l) => l.digest())),
    );
    await validateImage(image, { layers: false });
  });
});

describe('scratchDir', () => {
  it('makes a fresh directory that cleanup removes with its contents', async () => {
    const a = await scratchDir('lading-fixture-');
    const b = await scratchDir('lading-fixture-');
    expect(a.dir).not.toBe(b.dir);
    expect(a.dir).toContain('lading-fixture-');
    await writeFile(join(a.dir, 'f'), 'x');
    await a.cleanup();
    await b.cleanup();
    await expect(stat(a.dir)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('scratchDirs', () => {
  it('removes every directory it made when removeAll is called', async () => {
    const dirs = scratchDirs('lading-fixtures-');
    const made = [await dirs.make(), await dirs.make()];
    expect(new Set(made).size).toBe(2);
    for (const d of made) expect((await stat(d)).isDirectory()).toBe(true);
    await dirs.removeAll();
    for (const d of made) await expect(stat(d)).rejects.toMatchObject({ code: 'ENOENT' });
    await dirs.removeAll();
  });
});

describe('TextSink and basicAuth', () => {
  it('collects written text', async () => {
    const sink = new TextSink();
    sink.write('a');
    await new Promise<void>((r) => sink.end('b', r));
    expect(sink.text).toBe('ab');
  });

  it('encodes basic credentials as an Authorization header', () => {
    expect(basicAuth('u', 'p:w')).toEqual({
      Authorization: `Basic ${Buffer.from('u:p:w').toString('base64')}`,
    });
  });
});
