import { Readable } from 'node:stream';
import { extract } from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { layerFromBytes, type Layer } from '@lading/core';
import { flatten } from '../src/index.js';
import { collect, makeTar, type TarEntry } from './helpers.js';

async function layer(entries: TarEntry[]): Promise<Layer> {
  return layerFromBytes(await makeTar(entries), { compressed: false });
}

/** listing reads a tar into name → type:content. */
async function listing(tar: Readable): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const x = extract();
  Readable.from([await collect(tar)]).pipe(x);
  for await (const e of x) {
    const body = await collect(e as unknown as Readable);
    out[e.header.name] = `${e.header.type}:${body.toString()}`;
  }
  return out;
}

describe('flatten', () => {
  it('applies whiteouts, opaque directories and replacements when layers are stacked', async () => {
    const lower = await layer([
      { name: 'a', type: 'directory' },
      { name: 'a/x', body: 'gone' },
      { name: 'a/y', body: 'stays' },
      { name: 'b', type: 'directory' },
      { name: 'b/z', body: 'hidden by opaque' },
      { name: 'b/deep', type: 'directory' },
      { name: 'b/deep/q', body: 'hidden too' },
      { name: 'keep', body: 'old' },
      { name: 'dir-then-file', type: 'directory' },
      { name: 'dir-then-file/inner', body: 'shadowed' },
    ]);
    const upper = await layer([
      { name: 'a/.wh.x' },
      { name: 'b', type: 'directory' },
      { name: 'b/.wh..wh..opq' },
      { name: 'b/new', body: 'fresh' },
      { name: './keep', body: 'new' },
      { name: 'dir-then-file', body: 'now a file' },
    ]);
    const top = await layer([{ name: 'c', body: 'top' }, { name: '.wh.a' }]);
    expect(await listing(flatten([lower, upper]))).toEqual({
      'a/': 'directory:',
      'a/y': 'file:stays',
      'b/': 'directory:',
      'b/new': 'file:fresh',
      keep: 'file:new',
      'dir-then-file': 'file:now a file',
    });
    const all = await listing(flatten([lower, upper, top]));
    expect(Object.keys(all).sort()).toEqual(['b/', 'b/new', 'c', 'dir-then-file', 'keep']);
  });

  it('fails the stream with ABORTED when the signal fires', async () => {
    const l = await layer([{ name: 'f', body: 'x' }]);
    const controller = new AbortController();
    controller.abort();
    await expect(collect(flatten([l], { signal: controller.signal }))).rejects.toMatchObject({
      code: 'ABORTED',
    });
  });
});
