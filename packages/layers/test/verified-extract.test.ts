import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { scratchDirs } from '@lading/testing';
import { digestOf, isLadingError, layerFromBytes, type Digest, type Layer } from '@lading/core';
import { extract, extractVerified } from '../src/index.js';
import { makeTar } from './helpers.js';

const dirs = scratchDirs('lading-verified-');
afterEach(() => dirs.removeAll());
const scratch = (): Promise<string> => dirs.make();

/** Claiming is a real layer that claims another diffId than its tar has (a config that lies). */
class Claiming implements Layer {
  readonly #of: Layer;
  readonly #diffId: Digest;
  readonly mediaType;
  constructor(of: Layer, diffId: Digest) {
    this.#of = of;
    this.#diffId = diffId;
    this.mediaType = of.mediaType;
  }
  digest(): Promise<Digest> {
    return this.#of.digest();
  }
  size(): Promise<number> {
    return this.#of.size();
  }
  diffId(): Promise<Digest> {
    return Promise.resolve(this.#diffId);
  }
  compressed(): Readable {
    return this.#of.compressed();
  }
  uncompressed(): Readable {
    return this.#of.uncompressed();
  }
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => new Error('expected a rejection'),
    (err: unknown) => err,
  );
}

describe('extractVerified', () => {
  it('unpacks layers in order, whiteouts applied, and leaves no spool behind', async () => {
    const parent = await scratch();
    const dir = join(parent, 'out');
    const l1 = layerFromBytes(
      await makeTar([
        { name: 'a.txt', body: 'a' },
        { name: 'b.txt', body: 'b' },
      ]),
    );
    const l2 = layerFromBytes(
      await makeTar([
        { name: '.wh.a.txt', body: '' },
        { name: 'c.txt', body: 'c' },
      ]),
    );
    await extractVerified([l1, l2], dir, { concurrency: 2 });
    expect((await readdir(dir)).sort()).toEqual(['b.txt', 'c.txt']);
    expect(await readdir(parent)).toEqual(['out']);
  });

  it('ignores bytes after the end-of-archive marker (as GNU tar and umoci), still verifying them', async () => {
    const tar = await makeTar([{ name: 'a.txt', body: 'a' }]);
    // GNU tar's record padding, then bytes that are no tar header
    const junk = Buffer.concat([tar, Buffer.alloc(10240), Buffer.alloc(1200, 0x41)]);
    for (const into of ['absent', 'full']) {
      const parent = await scratch();
      const dir = join(parent, 'out');
      if (into === 'full') {
        await mkdir(dir);
        await writeFile(join(dir, 'kept'), 'k');
      }
      await extractVerified([layerFromBytes(junk)], dir);
      expect((await readdir(dir)).sort(), into).toEqual(
        into === 'full' ? ['a.txt', 'kept'] : ['a.txt'],
      );
      await extract([layerFromBytes(junk)], join(parent, 'plain'));
      expect(await readdir(join(parent, 'plain'))).toEqual(['a.txt']);
      // the digest still covers them: a layer claiming the tar's diffId fails
      const err = await rejection(
        extractVerified([new Claiming(layerFromBytes(junk), digestOf(tar))], join(parent, 'x')),
      );
      expect(isLadingError(err, 'DIGEST_MISMATCH')).toBe(true);
    }
  });

  it('spools every layer at once into a full dir when concurrency is Infinity, and refuses NaN', async () => {
    const dir = await scratch();
    await extractVerified([layerFromBytes(await makeTar([{ name: 'old.txt', body: 'o' }]))], dir);
    const layers: Layer[] = [];
    for (const n of ['x', 'y', 'z']) {
      layers.push(layerFromBytes(await makeTar([{ name: `${n}.txt`, body: n }])));
    }
    await extractVerified(layers, dir, { concurrency: Infinity });
    expect((await readdir(dir)).sort()).toEqual(['old.txt', 'x.txt', 'y.txt', 'z.txt']);
    const err = await rejection(extractVerified([], join(dir, 'nan'), { concurrency: NaN }));
    expect(isLadingError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((await readdir(dir)).sort()).toEqual(['old.txt', 'x.txt', 'y.txt', 'z.txt']);
  });

  it('fails with DIGEST_MISMATCH before applying a layer whose tar is not its diffId', async () => {
    const parent = await scratch();
    const dir = join(parent, 'out');
    const good = layerFromBytes(await makeTar([{ name: 'good.txt', body: 'good' }]));
    const lying = new Claiming(
      layerFromBytes(await makeTar([{ name: 'evil.txt', body: 'evil' }])),
      digestOf(Buffer.from('some other tar')),
    );
    const err = await rejection(extractVerified([good, lying], dir));
    expect(isLadingError(err, 'DIGEST_MISMATCH')).toBe(true);
    // (the CLI's hint: an inconsistent image, not bytes corrupted in transit)
    expect((err as { diffId?: unknown }).diffId).toBe(true);
    expect(await readdir(parent)).toEqual([]);
  });

  it('rejects with ABORTED and leaves nothing when the signal fires', async () => {
    const parent = await scratch();
    const dir = join(parent, 'out');
    const ac = new AbortController();
    ac.abort();
    const l1 = layerFromBytes(await makeTar([{ name: 'a.txt', body: 'a' }]));
    const err = await rejection(extractVerified([l1], dir, { signal: ac.signal }));
    expect(isLadingError(err, 'ABORTED')).toBe(true);
    expect(await readdir(parent)).toEqual([]);
  });
});
