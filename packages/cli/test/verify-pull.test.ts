import { randomBytes } from 'node:crypto';
import {
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  readlink,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendLayers,
  digestHex,
  emptyImage,
  layerFromBytes,
  writeImage,
  type Digest,
} from '@lading/core';
import { createRegistry, filesystemStorage, type Registry } from '@lading/registry';
import { ociLayout } from '@lading/layout';
import { registryTarget } from '@lading/remote';
import { filesTar, recordingProxy } from '@lading/testing';
import { lading } from './helpers.js';

function stored(tar: Buffer): Buffer {
  return gzipSync(tar, { level: 0 });
}

/** snapshot reads a tree as path → type:mode:content, setuid bits included. */
async function snapshot(dir: string): Promise<Record<string, string> | undefined> {
  if ((await lstat(dir).catch(() => undefined)) === undefined) return undefined;
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      const st = await lstat(p);
      const key = relative(dir, p);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out[key] = `l:${await readlink(p)}`;
      else if (st.isDirectory()) {
        out[key] = `d:${mode}`;
        await walk(p);
      } else out[key] = `f:${mode}:${(await readFile(p)).toString('base64')}`;
    }
  };
  await walk(dir);
  return out;
}

let work: string;
let storage: string;
let registry: Registry;
let host: string;
const good1 = stored(
  filesTar([
    { name: 'app/one.txt', body: Buffer.from('layer one\n') },
    { name: 'app/big.bin', body: randomBytes(200_000) },
  ]),
);
const good2 = stored(
  filesTar([
    { name: 'app/two.txt', body: Buffer.from('layer two\n') },
    { name: 'app/pad.bin', body: randomBytes(5_000) },
  ]),
);
// The same lengths as good1 and good2 (so the registry's Content-Length
// matches), other files: a setuid binary among them.
const evil1 = stored(
  filesTar([
    { name: 'app/one.txt', body: Buffer.from('EVIL ONE!\n') },
    { name: 'app/suid', body: randomBytes(200_000), mode: 0o4755 },
  ]),
);
const evil2 = stored(
  filesTar([
    { name: 'app/two.txt', body: Buffer.from('EVIL TWO!\n') },
    { name: 'app/suid', body: randomBytes(5_000), mode: 0o4755 },
  ]),
);

/** pushes a two-layer image to `repo:v1` and returns the layers' digests. */
async function pushTwoLayers(repo: string): Promise<Digest[]> {
  const image = appendLayers(emptyImage(), layerFromBytes(good1), layerFromBytes(good2));
  await writeImage(registryTarget(`${host}/${repo}`), 'v1', image);
  return Promise.all((await image.layers()).map((l) => l.digest()));
}

/** tamper replaces a stored blob's bytes on the registry's disk. */
async function tamper(digest: Digest, bytes: Buffer): Promise<void> {
  await writeFile(join(storage, 'blobs', 'sha256', digestHex(digest)), bytes);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-verify-pull-'));
  storage = join(work, 'registry');
  registry = createRegistry({ storage: filesystemStorage(storage) });
  host = new URL((await registry.listen({ host: '127.0.0.1', port: 0 })).url).host;
  expect(evil1.length).toBe(good1.length);
  expect(evil2.length).toBe(good2.length);
});

afterAll(async () => {
  try {
    await registry.close();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

async function leftovers(parent: string): Promise<string[]> {
  return (await readdir(parent)).filter((n) => n.includes('.lading-'));
}

describe('lading pull REF DIR (verify before apply)', () => {
  it('unpacks an intact image into an absent, an empty and a non-empty DIR', async () => {
    await pushTwoLayers('verify/intact');
    const parent = join(work, 'intact');
    await mkdir(join(parent, 'empty'), { recursive: true });
    await mkdir(join(parent, 'full', 'keep'), { recursive: true });
    await writeFile(join(parent, 'full', 'keep', 'mine.txt'), 'mine\n');
    for (const name of ['absent', 'empty', 'full']) {
      const r = await lading('pull', `${host}/verify/intact:v1`, join(parent, name));
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const tree = await snapshot(join(parent, name));
      expect(tree?.['app/one.txt']).toBe(`f:644:${Buffer.from('layer one\n').toString('base64')}`);
      expect(tree?.['app/two.txt']).toBe(`f:644:${Buffer.from('layer two\n').toString('base64')}`);
    }
    expect((await snapshot(join(parent, 'full')))?.['keep/mine.txt']).toBeDefined();
    expect(await leftovers(parent)).toEqual([]);
  });

  it('asks for the rest of a layer whose connection is cut mid-body, and unpacks it whole', async () => {
    const [first] = await pushTwoLayers('verify/cut');
    let cuts = 0;
    const proxy = await recordingProxy(`http://${host}`, {
      cut: (req) =>
        req.method === 'GET' && req.path.endsWith(first!) && cuts++ === 0 ? 60_000 : undefined,
    });
    try {
      const dir = join(work, 'cut');
      const r = await lading('pull', `${proxy.host}/verify/cut:v1`, dir);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const tree = await snapshot(dir);
      expect(tree?.['app/one.txt']).toBe(`f:644:${Buffer.from('layer one\n').toString('base64')}`);
      expect(tree?.['app/two.txt']).toBe(`f:644:${Buffer.from('layer two\n').toString('base64')}`);
      const gets = proxy.requests.filter((q) => q.method === 'GET' && q.path.endsWith(first!));
      expect(gets.map((q) => q.headers.range)).toEqual([undefined, 'bytes=60000-']);
      expect(gets[1]!.status).toBe(206);
    } finally {
      await proxy.close();
    }
  });

  it('puts a non-empty DIR back when a verified layer is refused while it is applied', async () => {
    // Layer 1 replaces and whites out the user's files; layer 2 writes one
    // more, then has a path that escapes.
    const one = stored(
      filesTar([
        { name: 'app/two.txt', body: Buffer.from('from the image\n') },
        { name: '.wh.notes.txt', body: Buffer.alloc(0) },
      ]),
    );
    const two = stored(
      filesTar([
        { name: 'app/more.txt', body: Buffer.from('more\n') },
        { name: '../escaped.txt', body: Buffer.from('out\n') },
      ]),
    );
    const image = appendLayers(emptyImage(), layerFromBytes(one), layerFromBytes(two));
    await writeImage(registryTarget(`${host}/verify/escape`), 'v1', image);
    const parent = join(work, 'escape');
    const full = join(parent, 'full');
    await mkdir(join(full, 'app'), { recursive: true });
    await writeFile(join(full, 'app', 'two.txt'), 'the original two\n');
    await writeFile(join(full, 'notes.txt'), 'my notes\n');
    const before = await snapshot(full);
    const r = await lading('pull', `${host}/verify/escape:v1`, full);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^lading: .*escaped\.txt/);
    expect(await snapshot(full)).toEqual(before);
    expect(await leftovers(parent)).toEqual([]);
    expect(await readdir(parent)).toEqual(['full']);
  });

  it.each([
    ['layer 2 (after a good layer 1)', 1],
    ['layer 1', 0],
  ])(
    'fails with DIGEST_MISMATCH and leaves DIR as it was when %s was swapped in the registry',
    async (_, which) => {
      const repo = `verify/tampered${String(which)}`;
      const digests = await pushTwoLayers(repo);
      await tamper(digests[which]!, which === 0 ? evil1 : evil2);
      const parent = join(work, `tampered${String(which)}`);
      await mkdir(join(parent, 'empty'), { recursive: true });
      await mkdir(join(parent, 'full', 'app'), { recursive: true });
      await writeFile(join(parent, 'full', 'app', 'two.txt'), 'the original two\n');
      await writeFile(join(parent, 'full', 'other.txt'), 'other\n');
      for (const name of ['absent', 'empty', 'full']) {
        const dir = join(parent, name);
        const before = await snapshot(dir);
        const r = await lading('pull', `${host}/${repo}:v1`, dir);
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/digest mismatch|size mismatch|not a valid tar|decompress/);
        expect(r.stderr.split('\n').filter(Boolean).length).toBeLessThanOrEqual(2);
        expect(r.stderr).toMatch(/^hint: /m);
        // each digest is named once (it used to be repeated in one message)
        const named = r.stderr.split('\n')[0]?.match(/sha256:[0-9a-f]{64}/g) ?? [];
        expect(new Set(named).size).toBe(named.length);
        expect(await snapshot(dir)).toEqual(before);
      }
      expect(await leftovers(parent)).toEqual([]);
    },
  );

  it('clears setuid unless --preserve-owners restores owners (as root)', async () => {
    const suid = layerFromBytes(
      stored(filesTar([{ name: 'bin/su', body: Buffer.from('#!/bin/sh\n'), mode: 0o4755 }])),
    );
    await writeImage(registryTarget(`${host}/verify/suid`), 'v1', appendLayers(emptyImage(), suid));
    const plain = join(work, 'suid-plain');
    expect((await lading('pull', `${host}/verify/suid:v1`, plain)).code).toBe(0);
    expect((await lstat(join(plain, 'bin/su'))).mode & 0o7777).toBe(0o755);
    const kept = join(work, 'suid-kept');
    expect((await lading('pull', `${host}/verify/suid:v1`, kept, '--preserve-owners')).code).toBe(
      0,
    );
    const asRoot = process.getuid?.() === 0;
    expect((await lstat(join(kept, 'bin/su'))).mode & 0o7777).toBe(asRoot ? 0o4755 : 0o755);
  });
});

describe('lading push oci:LAYOUT (regular files only)', () => {
  it('sends nothing of a blob symlinked out of the layout and fails UNSAFE_PATH', async () => {
    const secret = stored(filesTar([{ name: 'secret.txt', body: randomBytes(4096) }]));
    const layer = layerFromBytes(secret);
    const layout = join(work, 'layout-link');
    await writeImage(ociLayout(layout), 'v1', appendLayers(emptyImage(), layer));
    const blob = join(layout, 'blobs', 'sha256', digestHex(await layer.digest()));
    const outside = join(work, 'outside-secret');
    await rename(blob, outside);
    await symlink(outside, blob);
    const r = await lading('push', `oci:${layout}:v1`, `${host}/verify/link:v1`);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not a regular file|symlink/);
    const inRegistry = join(storage, 'blobs', 'sha256', digestHex(await layer.digest()));
    expect(await lstat(inRegistry).catch(() => undefined)).toBeUndefined();
  });
});
