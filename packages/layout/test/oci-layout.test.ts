import { afterEach, describe, expect, it } from 'vitest';
import { scratchDirs } from '@lading/testing';
import { spawn } from 'node:child_process';
import { readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import {
  MediaType,
  copy,
  digestOf,
  isLadingError,
  layerFromBytes,
  memoryTarget,
  writeImage,
  type Descriptor,
  type IndexManifest,
  type IoOptions,
  type Target,
} from '@lading/core';
import { ociLayout, refNameAnnotation } from '../src/index.js';
import { OnceLayer, lazyImage, run, tarOf } from './helpers.js';

const dirs = scratchDirs('lading-layout-test-');
afterEach(() => dirs.removeAll());
const scratch = (): Promise<string> => dirs.make();

function caught(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

async function sampleImage() {
  return lazyImage([
    new OnceLayer(await tarOf({ 'etc/hello.txt': 'hello\n' })),
    layerFromBytes(await tarOf({ 'bin/tool': Buffer.alloc(10_000, 1) })),
    new OnceLayer(await tarOf({ 'srv/data.bin': Buffer.alloc(50_000, 7) })),
  ]);
}

describe('ociLayout', () => {
  it('reads back what writeImage wrote, stream layers included', async () => {
    const dir = await scratch();
    const layout = ociLayout(dir);
    const image = await sampleImage();
    const desc = await writeImage(layout, 'v1', image);
    expect(desc.digest).toBe(await image.digest());
    expect(JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8'))).toEqual({
      imageLayoutVersion: '1.0.0',
    });
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as IndexManifest;
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0]?.annotations?.[refNameAnnotation]).toBe('v1');
    expect(await layout.tags()).toEqual(['v1']);
    const resolved = await layout.resolve('v1');
    expect(resolved).toEqual({
      mediaType: MediaType.OciManifest,
      digest: desc.digest,
      size: desc.size,
    });
    expect(await layout.resolve(desc.digest)).toEqual(resolved);
    const mem = memoryTarget();
    await copy(layout, 'v1', mem, 'v1');
    const manifest = await image.manifest();
    expect(new Set(mem.digests())).toEqual(
      new Set([desc.digest, manifest.config.digest, ...manifest.layers.map((l) => l.digest)]),
    );
    // nothing but blobs, oci-layout and index.json: temp files were renamed away
    expect((await readdir(dir)).sort()).toEqual(['blobs', 'index.json', 'oci-layout']);
  });

  it('refuses a layout of another imageLayoutVersion, to read or to write, and reads one without oci-layout', async () => {
    const dir = await scratch();
    const image = await sampleImage();
    await writeImage(ociLayout(dir), 'v1', image);
    const index = await readFile(join(dir, 'index.json'));
    for (const text of ['{"imageLayoutVersion":"2.0.0"}', '{}', 'not json']) {
      await writeFile(join(dir, 'oci-layout'), text);
      const layout = ociLayout(dir);
      for (const err of [
        await caught(layout.resolve('v1')),
        await caught(writeImage(layout, 'v2', await sampleImage())),
      ]) {
        expect(isLadingError(err, 'UNSUPPORTED'), text).toBe(true);
        expect((err as Error).message).toMatch(
          /\/oci-layout: imageLayoutVersion (?:"2\.0\.0"|missing) is not an OCI image layout 1\.x$/,
        );
      }
      // nothing was written
      expect((await readFile(join(dir, 'index.json'))).equals(index)).toBe(true);
    }
    await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.1.0"}');
    expect((await ociLayout(dir).resolve('v1')).digest).toBe(await image.digest());
    await rm(join(dir, 'oci-layout'));
    expect((await ociLayout(dir).resolve('v1')).digest).toBe(await image.digest());
  });

  it('names index.json, not a made-up digest, when an entry of it is not a descriptor', async () => {
    const dir = await scratch();
    await writeImage(ociLayout(dir), 'v1', await sampleImage());
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as IndexManifest;
    (index.manifests[0] as { digest: string }).digest = 'sha256:nothex';
    await writeFile(join(dir, 'index.json'), JSON.stringify(index));
    const err = await caught(ociLayout(dir).resolve('v1'));
    expect(isLadingError(err, 'INVALID_MANIFEST')).toBe(true);
    expect((err as Error).message).toBe(
      `${dir}/index.json: manifests[0].digest is not a valid digest`,
    );
  });

  it('passes umoci stat and skopeo inspect when written by lading', async () => {
    const dir = await scratch();
    const layout = ociLayout(dir);
    const desc = await writeImage(layout, 'v1', await sampleImage());
    const stat = await run('umoci', ['stat', '--json', '--image', `${dir}:v1`]);
    const history = (JSON.parse(stat.stdout) as { history: unknown[] }).history;
    expect(history).toHaveLength(3);
    const inspect = await run('skopeo', ['inspect', `oci:${dir}:v1`]);
    const info = JSON.parse(inspect.stdout) as { Digest: string; Layers: string[] };
    expect(info.Digest).toBe(desc.digest);
    expect(info.Layers).toHaveLength(3);
  });

  it('reads a layout umoci made and copies it out', async () => {
    const dir = await scratch();
    const d = join(dir, 'u');
    await run('umoci', ['init', '--layout', d]);
    await run('umoci', ['new', '--image', `${d}:t`]);
    await run('umoci', ['config', '--image', `${d}:t`, '--config.cmd', '/bin/true', '--tag', 't2']);
    const layout = ociLayout(d);
    expect(await layout.tags()).toEqual(['t', 't2']);
    const mem = memoryTarget();
    const root = await copy(layout, 't2', mem, 'x');
    expect(root.mediaType).toBe(MediaType.OciManifest);
    const manifest = JSON.parse(Buffer.from(mem.bytes(root.digest)!).toString()) as {
      config: Descriptor;
    };
    const config = JSON.parse(Buffer.from(mem.bytes(manifest.config.digest)!).toString()) as {
      config: { Cmd: string[] };
    };
    expect(config.config.Cmd).toEqual(['/bin/true']);
    // and the layout round trips through another layout that umoci then reads
    const again = join(dir, 'again');
    await copy(layout, 't2', ociLayout(again), 'copied');
    const stat = await run('umoci', ['stat', '--json', '--image', `${again}:copied`]);
    expect(stat.stdout).toContain('history');
  });

  it('rejects a blob whose bytes are not its digest and leaves no temp file', async () => {
    const dir = await scratch();
    const layout = ociLayout(dir);
    const desc: Descriptor = { mediaType: 'x', digest: digestOf('right'), size: 5 };
    const err = await caught(layout.push(desc, Readable.from([Buffer.from('wrong')])));
    expect(isLadingError(err, 'DIGEST_MISMATCH')).toBe(true);
    expect(await layout.exists(desc)).toBe(false);
    expect((await readdir(dir)).sort()).toEqual(['blobs', 'index.json', 'oci-layout']);
  });

  it('fails fetch with DIGEST_MISMATCH when a blob file was corrupted', async () => {
    const dir = await scratch();
    const layout = ociLayout(dir);
    const desc = await layout.pushUnknown(Readable.from([Buffer.from('payload')]), 'x');
    await writeFile(join(dir, 'blobs', 'sha256', desc.digest.slice(7)), 'PAYLOAD');
    const chunks: Buffer[] = [];
    const err = await caught(
      (async () => {
        for await (const c of await layout.fetch(desc)) chunks.push(c as Buffer);
      })(),
    );
    expect(isLadingError(err, 'DIGEST_MISMATCH')).toBe(true);
  });

  it('answers NOT_FOUND for unknown tags, blobs, and tagging an absent manifest', async () => {
    const dir = await scratch();
    const layout = ociLayout(dir);
    expect(isLadingError(await caught(layout.resolve('nope')), 'NOT_FOUND')).toBe(true);
    const desc: Descriptor = { mediaType: MediaType.OciManifest, digest: digestOf('m'), size: 1 };
    expect(isLadingError(await caught(layout.fetch(desc)), 'NOT_FOUND')).toBe(true);
    expect(isLadingError(await caught(layout.tag(desc, 'v1')), 'NOT_FOUND')).toBe(true);
  });

  it('moves a tag when it is re-pointed and keeps other tags', async () => {
    const dir = await scratch();
    const layout = ociLayout(dir);
    const a = await writeImage(layout, 'a', lazyImage([layerFromBytes(await tarOf({ a: 'a' }))]));
    const b = await writeImage(layout, 'b', lazyImage([layerFromBytes(await tarOf({ b: 'b' }))]));
    await layout.tag(b, 'a');
    expect((await layout.resolve('a')).digest).toBe(b.digest);
    expect((await layout.resolve('b')).digest).toBe(b.digest);
    expect((await layout.list()).map((d) => d.digest)).not.toContain(a.digest);
    expect(await layout.untag('a')).toBe(true);
    expect(await layout.tags()).toEqual(['b']);
  });

  it('removes only unreachable blobs when gc runs', async () => {
    const dir = await scratch();
    const layout = ociLayout(dir);
    const keep = await writeImage(
      layout,
      'keep',
      lazyImage([layerFromBytes(await tarOf({ k: 'k' }))]),
    );
    const drop = await writeImage(
      layout,
      'drop',
      lazyImage([layerFromBytes(await tarOf({ d: 'd' }))]),
    );
    const orphan = await layout.pushUnknown(Readable.from([Buffer.from('orphan')]), 'x');
    await layout.untag('drop');
    const result = await layout.gc();
    // drop's manifest and layer go (the config is shared? no: diffIds differ) plus the orphan
    expect(result.removed).toContain(orphan.digest);
    expect(result.removed).toContain(drop.digest);
    expect(result.removed).toHaveLength(4);
    expect(await layout.exists(orphan)).toBe(false);
    const mem = memoryTarget();
    await copy(layout, 'keep', mem, 'keep');
    expect((await mem.resolve('keep')).digest).toBe(keep.digest);
    expect((await layout.gc()).removed).toEqual([]);
  });

  it('keeps index.json valid with every tag when two processes tag concurrently', async () => {
    const dir = await scratch();
    const layout = ociLayout(dir);
    const desc = await writeImage(
      layout,
      'seed',
      lazyImage([layerFromBytes(await tarOf({ s: 's' }))]),
    );
    const script = fileURLToPath(new URL('./fixtures/tagger.js', import.meta.url));
    const n = 40;
    const child = (prefix: string) =>
      new Promise<number | null>((resolve, reject) => {
        const p = spawn(
          process.execPath,
          [script, dir, prefix, String(n), desc.digest, String(desc.size)],
          {
            stdio: ['ignore', 'ignore', 'inherit'],
          },
        );
        p.on('error', reject);
        p.on('exit', resolve);
      });
    const codes = await Promise.all([child('left'), child('right')]);
    expect(codes).toEqual([0, 0]);
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as IndexManifest;
    const tags = index.manifests.map((d) => d.annotations?.[refNameAnnotation]);
    expect(tags).toHaveLength(2 * n + 1);
    expect(new Set(tags).size).toBe(2 * n + 1);
    for (let i = 0; i < n; i++) {
      expect(tags).toContain(`left-${i}`);
      expect(tags).toContain(`right-${i}`);
    }
    expect((await readdir(dir)).sort()).toEqual(['blobs', 'index.json', 'oci-layout']);
  });

  it('breaks a stale lock and times out on a fresh one', async () => {
    const dir = await scratch();
    const layout = ociLayout(dir, { lockTimeoutMs: 300, staleLockMs: 5_000 });
    const desc = await writeImage(
      layout,
      'v1',
      lazyImage([layerFromBytes(await tarOf({ x: 'x' }))]),
    );
    const lock = join(dir, 'index.json.lock');
    await writeFile(lock, 'held');
    const err = await caught(layout.tag(desc, 'v2'));
    expect(isLadingError(err, 'TIMEOUT')).toBe(true);
    const old = new Date(Date.now() - 60_000);
    await utimes(lock, old, old);
    await layout.tag(desc, 'v2');
    expect(await layout.tags()).toEqual(['v1', 'v2']);
    expect((await readdir(dir)).sort()).toEqual(['blobs', 'index.json', 'oci-layout']);
  });

  it('finishes an interrupted copy into a layout on re-run without dangling manifests', async () => {
    const src = memoryTarget();
    const image = await sampleImage();
    await writeImage(src, 'v1', image);
    const total = src.digests().length;
    for (let ok = 0; ok < total; ok++) {
      const dir = await scratch();
      const layout = ociLayout(dir);
      let pushes = 0;
      const flaky: Target = {
        resolve: (r, o?: IoOptions) => layout.resolve(r, o),
        fetch: (d, o?: IoOptions) => layout.fetch(d, o),
        exists: (d, o?: IoOptions) => layout.exists(d, o),
        tag: (d, r, o?: IoOptions) => layout.tag(d, r, o),
        push: async (d, c, o?: IoOptions) => {
          if (pushes++ >= ok) {
            c.destroy();
            throw new Error('disk full (injected)');
          }
          await layout.push(d, c, o);
        },
      };
      await expect(copy(src, 'v1', flaky, 'v1')).rejects.toThrow('disk full (injected)');
      expect(await layout.tags()).toEqual([]);
      // every manifest present has all its children
      const manifest = await image.manifest();
      const desc = await src.resolve('v1');
      if (await layout.exists(desc)) {
        for (const d of [manifest.config, ...manifest.layers])
          expect(await layout.exists(d)).toBe(true);
      }
      expect((await readdir(dir)).filter((n) => n.startsWith('.lading-tmp-'))).toEqual([]);
      await copy(src, 'v1', layout, 'v1');
      const { stdout } = await run('skopeo', ['inspect', `oci:${dir}:v1`]);
      expect((JSON.parse(stdout) as { Digest: string }).Digest).toBe(desc.digest);
    }
  });

  it('removes the temp file when a push is aborted mid-stream', async () => {
    const dir = await scratch();
    const layout = ociLayout(dir);
    await layout.init();
    const ctl = new AbortController();
    async function* slow() {
      yield Buffer.alloc(1000, 1);
      ctl.abort();
      await new Promise((r) => setTimeout(r, 20));
      yield Buffer.alloc(1000, 2);
    }
    const desc: Descriptor = { mediaType: 'x', digest: digestOf(Buffer.alloc(2000)), size: 2000 };
    const err = await caught(layout.push(desc, Readable.from(slow()), { signal: ctl.signal }));
    expect((err as Error).name).toBe('AbortError');
    expect((await readdir(dir)).sort()).toEqual(['blobs', 'index.json', 'oci-layout']);
  });

  it('succeeds when another writer stored a blob between exists() and push()', async () => {
    const dir = await scratch();
    const layout = ociLayout(dir);
    const src = memoryTarget();
    await writeImage(src, 'v1', await sampleImage());
    await copy(src, 'v1', layout, 'v1');
    // exists() answering false reproduces the race: every push meets a stored blob
    const racing: Target = {
      resolve: (r, o?: IoOptions) => layout.resolve(r, o),
      fetch: (d, o?: IoOptions) => layout.fetch(d, o),
      exists: () => Promise.resolve(false),
      push: (d, c, o?: IoOptions) => layout.push(d, c, o),
      tag: (d, r, o?: IoOptions) => layout.tag(d, r, o),
    };
    const root = await copy(src, 'v1', racing, 'v2');
    expect((await layout.resolve('v2')).digest).toBe(root.digest);
  });
});
