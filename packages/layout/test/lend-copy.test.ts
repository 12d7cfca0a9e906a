import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ProgressEmitter,
  appendLayers,
  copy,
  digestHex,
  emptyImage,
  layerFromBytes,
  writeImage,
  type Digest,
  type ProgressEvent,
} from '@lading/core';
import { createRegistry, filesystemStorage, type Registry } from '@lading/registry';
import { registryTarget } from '@lading/remote';
import { scratchDirs } from '@lading/testing';
import { ociLayout } from '../src/index.js';

// A registry lends its blobs (plain HTTP) and a layout takes them as a sink:
// copy() moves the bytes between them without a stream, hashing them once.

const dirs = scratchDirs('lading-lend-copy-');
afterEach(() => dirs.removeAll());
const fixtures = scratchDirs('lading-lend-copy-registry-');

let work: string;
let registry: Registry;
let host: string;
let storage: string;
const layer = layerFromBytes(randomBytes(3 * 1024 * 1024 + 7));
let layerDigest: Digest;

beforeAll(async () => {
  work = await fixtures.make();
  storage = join(work, 'registry');
  registry = createRegistry({ storage: filesystemStorage(storage) });
  host = new URL((await registry.listen({ host: '127.0.0.1', port: 0 })).url).host;
  layerDigest = await layer.digest();
  await writeImage(registryTarget(`${host}/lend/app`), 'v1', appendLayers(emptyImage(), layer));
});
afterAll(async () => {
  try {
    await registry.close();
  } finally {
    await fixtures.removeAll();
  }
});

const leftovers = async (dir: string): Promise<string[]> =>
  (await readdir(dir)).filter((n) => n.includes('.lading-'));

describe('copy from a registry into an OCI layout', () => {
  it('stores every blob byte for byte and reports the progress of the layer', async () => {
    const dir = await dirs.make();
    const progress = new ProgressEmitter();
    const events: ProgressEvent[] = [];
    progress.on('progress', (e) => events.push(e));
    const root = await copy(registryTarget(`${host}/lend/app`), 'v1', ociLayout(dir), 'v1', {
      progress,
    });
    const stored = await readFile(join(dir, 'blobs', 'sha256', digestHex(layerDigest)));
    expect(
      stored.equals(
        Buffer.from(await readFile(join(storage, 'blobs', 'sha256', digestHex(layerDigest)))),
      ),
    ).toBe(true);
    expect((await ociLayout(dir).resolve('v1')).digest).toBe(root.digest);
    const bytes = events.flatMap((e) =>
      e.type === 'blob-progress' && e.id === layerDigest ? [e.bytes] : [],
    );
    expect(bytes.length).toBeGreaterThan(1);
    expect(bytes.at(-1)).toBe(stored.length);
    expect(events.some((e) => e.type === 'blob-done' && e.digest === layerDigest)).toBe(true);
    expect(await leftovers(dir)).toEqual([]);
  });

  it('fails SIZE_MISMATCH on a longer blob and DIGEST_MISMATCH on other bytes, storing nothing', async () => {
    const blobFile = join(storage, 'blobs', 'sha256', digestHex(layerDigest));
    const good = await readFile(blobFile);
    try {
      for (const [bytes, code] of [
        [Buffer.concat([good, Buffer.from('more')]), 'SIZE_MISMATCH'],
        [randomBytes(good.length), 'DIGEST_MISMATCH'],
      ] as const) {
        await writeFile(blobFile, bytes);
        const dir = await dirs.make();
        const err = await copy(
          registryTarget(`${host}/lend/app`),
          'v1',
          ociLayout(dir),
          'v1',
        ).catch((e: unknown) => e);
        expect((err as { code?: string }).code).toBe(code);
        const blobs = await readdir(join(dir, 'blobs', 'sha256'));
        expect(blobs).not.toContain(digestHex(layerDigest));
        expect(await leftovers(dir)).toEqual([]);
      }
    } finally {
      await writeFile(blobFile, good);
    }
  });
});

describe('OciLayout.openSink', () => {
  it('commits chunks written out of order, drops them on abort, and has nothing to open for a blob it holds', async () => {
    const dir = await dirs.make();
    const layout = ociLayout(dir);
    const bytes = randomBytes(10_000);
    const desc = { mediaType: 'application/octet-stream', digest: layerDigest, size: 10_000 };
    const dropped = await layout.openSink(desc);
    await dropped!.write(bytes.subarray(0, 10), 0);
    await dropped!.abort();
    expect(await leftovers(dir)).toEqual([]);
    expect(await layout.exists(desc)).toBe(false);
    const sink = await layout.openSink(desc);
    await Promise.all([
      sink!.write(bytes.subarray(6000), 6000),
      sink!.write(bytes.subarray(0, 6000), 0),
    ]);
    await sink!.commit();
    expect(
      (await readFile(join(dir, 'blobs', 'sha256', digestHex(layerDigest)))).equals(bytes),
    ).toBe(true);
    expect(await layout.openSink(desc)).toBeUndefined();
    expect(await leftovers(dir)).toEqual([]);
  });
});
