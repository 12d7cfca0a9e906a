import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import {
  MediaType,
  ProgressEmitter,
  appendLayers,
  emptyImage,
  imageIndex,
  withPlatform,
  writeImageIndex,
  copy,
  digestOf,
  isLadingError,
  layerFromBytes,
  memoryTarget,
  parsePlatform,
  platformMatches,
  successors,
  writeImage,
  type Descriptor,
  type IoOptions,
  type Layer,
  type Mounter,
  type ProgressEvent,
} from '../src/index.js';
import { MemoryTarget } from '../src/memory-target.js';
import { OnceLayer, lazyImage, withFetch } from '@lading/testing';
import {
  FlakyTarget,
  RecordingTarget,
  danglingChildren,
  pushImage,
  pushIndex,
  tarBytes,
} from './copy-helpers.js';

async function multiArch(shared = true) {
  const src = memoryTarget();
  const amd = await pushImage(src, { os: 'linux', architecture: 'amd64' }, [
    shared ? 'base' : 'base-amd',
    'amd-app',
  ]);
  const arm = await pushImage(src, { os: 'linux', architecture: 'arm64', variant: 'v8' }, [
    'base',
    'arm-app',
    'arm-extra',
  ]);
  const index = await pushIndex(src, [amd, arm]);
  await src.tag(index, 'multi');
  return { src, amd, arm, index };
}

function caught(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

describe('memoryTarget', () => {
  it('rejects content whose digest is not the descriptor when pushing', async () => {
    const t = memoryTarget();
    const desc: Descriptor = { mediaType: 'x', digest: digestOf('a'), size: 1 };
    const err = await caught(t.push(desc, Readable.from([Buffer.from('b')])));
    expect(isLadingError(err, 'DIGEST_MISMATCH')).toBe(true);
    expect(await t.exists(desc)).toBe(false);
  });

  it('rejects content of the wrong size when pushing', async () => {
    const t = memoryTarget();
    const desc: Descriptor = { mediaType: 'x', digest: digestOf('ab'), size: 1 };
    const err = await caught(t.push(desc, Readable.from([Buffer.from('ab')])));
    expect(isLadingError(err, 'SIZE_MISMATCH')).toBe(true);
  });

  it('answers NOT_FOUND for unknown refs and for tagging unpushed manifests', async () => {
    const t = memoryTarget();
    expect(isLadingError(await caught(t.resolve('nope')), 'NOT_FOUND')).toBe(true);
    const desc: Descriptor = { mediaType: MediaType.OciManifest, digest: digestOf('m'), size: 1 };
    expect(isLadingError(await caught(t.tag(desc, 'v1')), 'NOT_FOUND')).toBe(true);
    expect(isLadingError(await caught(t.fetch(desc)), 'NOT_FOUND')).toBe(true);
  });

  it('resolves by tag and by digest when content is stored', async () => {
    const t = memoryTarget();
    const d = await t.pushUnknown(Readable.from([Buffer.from('{}')]), MediaType.OciConfig);
    expect(d).toEqual({ mediaType: MediaType.OciConfig, digest: digestOf('{}'), size: 2 });
    await t.tag(d, 'v1');
    expect(await t.resolve('v1')).toEqual(d);
    expect(await t.resolve(d.digest)).toEqual(d);
  });
});

describe('platform helpers', () => {
  it('parses os/arch/variant and matches arm64 to v8 when the variant is implicit', () => {
    expect(parsePlatform('linux/arm64/v8')).toEqual({
      os: 'linux',
      architecture: 'arm64',
      variant: 'v8',
    });
    expect(
      platformMatches(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64' }),
    ).toBe(true);
    expect(
      platformMatches(parsePlatform('linux/arm/v6'), { os: 'linux', architecture: 'arm' }),
    ).toBe(false);
    expect(platformMatches(parsePlatform('linux/amd64'), undefined)).toBe(false);
    expect(() => parsePlatform('linux')).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });
});

describe('copy', () => {
  it('copies a whole index and tags the destination when both are memory targets', async () => {
    const { src, index } = await multiArch();
    const dst = memoryTarget();
    const root = await copy(src, 'multi', dst, 'copied');
    expect(root.digest).toBe(index.digest);
    expect((await dst.resolve('copied')).digest).toBe(index.digest);
    expect(new Set(dst.digests())).toEqual(new Set(src.digests()));
    expect(await danglingChildren(dst)).toEqual([]);
  });

  it('copies one platform and makes its manifest the root when a platform is selected', async () => {
    const { src, arm, amd } = await multiArch(false);
    const dst = memoryTarget();
    const root = await copy(src, 'multi', dst, 'arm', { platform: 'linux/arm64' });
    expect(root.digest).toBe(arm.manifest.digest);
    expect(root.mediaType).toBe(MediaType.OciManifest);
    expect((await dst.resolve('arm')).digest).toBe(arm.manifest.digest);
    const expected = [arm.manifest.digest, arm.config.digest, ...arm.layers.map((l) => l.digest)];
    expect(new Set(dst.digests())).toEqual(new Set(expected));
    expect(await dst.exists(amd.layers[0]!)).toBe(false);
  });

  it('walks nested indexes and Docker manifest lists and picks arm/v7 among variants', async () => {
    const src = memoryTarget();
    const v6 = await pushImage(src, { os: 'linux', architecture: 'arm', variant: 'v6' }, ['v6']);
    const v7 = await pushImage(src, { os: 'linux', architecture: 'arm', variant: 'v7' }, ['v7']);
    const amd = await pushImage(src, { os: 'linux', architecture: 'amd64' }, ['amd']);
    const inner = await pushIndex(src, [v6, v7]);
    const list = {
      schemaVersion: 2,
      mediaType: MediaType.DockerManifestList,
      manifests: [
        { ...amd.manifest },
        { ...inner, platform: { os: 'linux', architecture: 'arm' } },
      ],
    };
    const outer = await src.pushUnknown(
      Readable.from([Buffer.from(JSON.stringify(list))]),
      MediaType.DockerManifestList,
    );
    await src.tag(outer, 'nested');
    const all = memoryTarget();
    await copy(src, 'nested', all, 'nested');
    expect(new Set(all.digests())).toEqual(new Set(src.digests()));
    const one = memoryTarget();
    const root = await copy(src, 'nested', one, 'v7', { platform: 'linux/arm/v7' });
    expect(root.digest).toBe(v7.manifest.digest);
    expect(await one.exists(v6.layers[0]!)).toBe(false);
    expect(await one.exists(v7.layers[0]!)).toBe(true);
    // the outer entry says linux/arm (implicitly v7), yet v6 is found inside
    const six = await copy(src, 'nested', memoryTarget(), undefined, { platform: 'linux/arm/v6' });
    expect(six.digest).toBe(v6.manifest.digest);
  });

  it('reads each manifest while asking whether the destination has it, and skips a present one whose read failed', async () => {
    const { src, amd, arm, index } = await multiArch(false);
    const dst = memoryTarget();
    await copy(src, 'multi', dst, undefined, { platform: 'linux/amd64' });
    // Every manifest HEAD at the destination is held until the source was
    // asked for that manifest: a copy that reads only after the answer
    // waits forever.
    const asked = new Map<string, () => void>();
    const wasAsked = new Map<string, Promise<void>>();
    const askedFor = (digest: string): Promise<void> => {
      let p = wasAsked.get(digest);
      if (p === undefined) {
        p = new Promise<void>((resolve) => asked.set(digest, resolve));
        wasAsked.set(digest, p);
      }
      return p;
    };
    const srcFetch = src.fetch.bind(src);
    src.fetch = (desc: Descriptor, options?: IoOptions) => {
      void askedFor(desc.digest);
      asked.get(desc.digest)?.();
      // The amd64 manifest is gone from the source; the destination has it.
      if (desc.digest === amd.manifest.digest) return Promise.reject(new Error('gone'));
      return srcFetch(desc, options);
    };
    const dstExists = dst.exists.bind(dst);
    dst.exists = async (desc: Descriptor, options?: IoOptions) => {
      if (desc.mediaType === MediaType.OciManifest || desc.mediaType === MediaType.OciIndex)
        await askedFor(desc.digest);
      return dstExists(desc, options);
    };
    const root = await copy(src, 'multi', dst, 'both');
    expect(root.digest).toBe(index.digest);
    expect(await dst.exists(arm.manifest)).toBe(true);
    expect((await dst.resolve('both')).digest).toBe(index.digest);
    expect(await danglingChildren(dst)).toEqual([]);
  });

  it('refuses a config declared past the 4 MiB cap before fetching a byte of it', async () => {
    const src = memoryTarget();
    const layer = tarBytes('a');
    const layerDesc: Descriptor = {
      mediaType: MediaType.OciLayerGzip,
      digest: digestOf(layer),
      size: layer.length,
    };
    await src.push(layerDesc, Readable.from([layer]));
    const config: Descriptor = {
      mediaType: MediaType.OciConfig,
      digest: digestOf(Buffer.from('never stored')),
      size: 2 ** 40,
    };
    const body = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config,
        layers: [layerDesc],
      }),
    );
    const manifest: Descriptor = {
      mediaType: MediaType.OciManifest,
      digest: digestOf(body),
      size: body.length,
    };
    await src.push(manifest, Readable.from([body]));
    const fetched: string[] = [];
    const srcFetch = src.fetch.bind(src);
    src.fetch = (desc: Descriptor, options?: IoOptions) => {
      fetched.push(desc.digest);
      return srcFetch(desc, options);
    };
    const dst = memoryTarget();
    const err = await caught(copy(src, manifest.digest, dst, 'x'));
    expect(err).toMatchObject({
      code: 'MANIFEST_TOO_LARGE',
      message: `config ${config.digest} is ${2 ** 40} bytes, over the 4194304-byte cap`,
    });
    expect(fetched).not.toContain(config.digest);
    expect(await dst.exists(manifest)).toBe(false);
  });

  it('refuses a Docker schema 1 root with UNSUPPORTED_MEDIA_TYPE, fetching nothing', async () => {
    const src = memoryTarget();
    const body = Buffer.from('{"schemaVersion":1}');
    const desc: Descriptor = {
      mediaType: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
      digest: digestOf(body),
      size: body.length,
    };
    src.resolve = () => Promise.resolve(desc);
    const fetched: string[] = [];
    src.fetch = (d: Descriptor) => {
      fetched.push(d.digest);
      return Promise.reject(new Error('not here'));
    };
    const err = await caught(copy(src, 'old', memoryTarget(), 'x'));
    expect(err).toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE' });
    expect((err as Error).message).toContain('Docker schema 1');
    expect(fetched).toEqual([]);
  });

  it('answers NOT_FOUND when no manifest matches the platform', async () => {
    const { src } = await multiArch();
    const err = await caught(
      copy(src, 'multi', memoryTarget(), 'x', { platform: 'windows/amd64' }),
    );
    expect(isLadingError(err, 'NOT_FOUND')).toBe(true);
  });

  it('skips the whole sub-graph when the destination already has the root', async () => {
    const { src } = await multiArch();
    const dst = memoryTarget();
    await copy(src, 'multi', dst, 'a');
    const skipped: string[] = [];
    const copied: string[] = [];
    await copy(src, 'multi', dst, 'b', {
      onSkipped: (d) => skipped.push(d.digest),
      postCopy: (d) => copied.push(d.digest),
    });
    expect(skipped).toHaveLength(1);
    expect(copied).toEqual([]);
    expect(dst.tags()).toEqual(['a', 'b']);
  });

  it('skips blobs the destination has and copies the rest when it has some of them', async () => {
    const { src, amd } = await multiArch();
    const dst = memoryTarget();
    const first = amd.layers[0]!;
    await dst.push(first, await src.fetch(first));
    const skipped: string[] = [];
    const rec = new RecordingTarget(dst);
    await copy(src, 'multi', rec, 'a', { onSkipped: (d) => skipped.push(d.digest) });
    expect(skipped).toEqual([first.digest]);
    expect(rec.pushed).not.toContain(first.digest);
    expect(new Set(dst.digests())).toEqual(new Set(src.digests()));
  });

  it('pushes children before parents and reports them to postCopy when copying', async () => {
    const { src, index } = await multiArch();
    const dst = memoryTarget();
    const order: string[] = [];
    const rec = new RecordingTarget(dst);
    await copy(src, 'multi', rec, 'x', { postCopy: (d) => order.push(d.digest) });
    expect(new Set(order)).toEqual(new Set(rec.pushed));
    for (const seq of [order, rec.pushed]) {
      for (const parent of seq) {
        const kids = await successors(dst, await dst.resolve(parent));
        for (const k of kids) expect(seq.indexOf(k.digest)).toBeLessThan(seq.indexOf(parent));
      }
    }
    expect(rec.pushed.at(-1)).toBe(index.digest);
    // the shared base layer is pushed once
    expect(new Set(rec.pushed).size).toBe(rec.pushed.length);
  });

  it('hands postCopy the verified manifest bytes so the graph can be read on the fly', async () => {
    const { src, amd, arm, index } = await multiArch();
    const seen = new Map<string, unknown>();
    await copy(src, 'multi', memoryTarget(), undefined, {
      postCopy: (d, manifest) => {
        if (manifest !== undefined) {
          expect(digestOf(manifest)).toBe(d.digest);
          seen.set(d.digest, JSON.parse(Buffer.from(manifest).toString('utf8')));
        }
      },
    });
    expect([...seen.keys()].sort()).toEqual(
      [index.digest, amd.manifest.digest, arm.manifest.digest].sort(),
    );
    expect(seen.get(index.digest)).toMatchObject({
      manifests: [{ digest: amd.manifest.digest }, {}],
    });
  });

  it('leaves a node out when preCopy answers skip', async () => {
    const { src, arm } = await multiArch(false);
    const dst = memoryTarget();
    const extra = arm.layers[2]!;
    await copy(src, 'multi', dst, undefined, {
      preCopy: (d) => (d.digest === extra.digest ? 'skip' : undefined),
    });
    expect(await dst.exists(extra)).toBe(false);
    expect(dst.tags()).toEqual([]);
  });

  it('finishes the job without dangling children when re-run after an interruption', async () => {
    const { src, index } = await multiArch(false);
    const total = src.digests().length;
    for (let ok = 0; ok < total; ok++) {
      const dst = memoryTarget();
      const flaky = new FlakyTarget(dst, ok);
      const err = await caught(copy(src, 'multi', flaky, 'v1', { concurrency: 3 }));
      expect((err as Error).message).toBe('injected push failure');
      expect(await danglingChildren(dst)).toEqual([]);
      expect(dst.tags()).toEqual([]);
      expect(await dst.exists(index)).toBe(false);
      flaky.okPushes = Number.POSITIVE_INFINITY;
      const before = dst.digests().length;
      await copy(src, 'multi', flaky, 'v1');
      expect(flaky.pushes).toBe(total);
      expect(dst.digests().length - before).toBe(total - before);
      expect((await dst.resolve('v1')).digest).toBe(index.digest);
      expect(new Set(dst.digests())).toEqual(new Set(src.digests()));
    }
  });

  it('bounds the pushes in flight by the concurrency option', async () => {
    const src = memoryTarget();
    const img = await pushImage(src, { os: 'linux', architecture: 'amd64' }, [
      'a',
      'b',
      'c',
      'd',
      'e',
      'f',
      'g',
      'h',
    ]);
    await src.tag(img.manifest, 't');
    for (const concurrency of [1, 3]) {
      const rec = new RecordingTarget(memoryTarget(), 5);
      await copy(src, 't', rec, 't', { concurrency });
      expect(rec.peak).toBe(concurrency);
    }
  });

  it('fails with DIGEST_MISMATCH and stores nothing bad when the source serves corrupt bytes', async () => {
    const { src, amd } = await multiArch();
    const victim = amd.layers[1]!;
    const corrupt = withFetch(src, async (d, o, own) => {
      if (d.digest !== victim.digest) return own(d, o);
      return Readable.from([Buffer.alloc(d.size, 7)]);
    });
    const dst = memoryTarget();
    const err = await caught(copy(corrupt, 'multi', dst, 'x'));
    expect(isLadingError(err, 'DIGEST_MISMATCH')).toBe(true);
    expect(await dst.exists(victim)).toBe(false);
    expect(await danglingChildren(dst)).toEqual([]);
  });

  it('rejects with ABORTED when the signal has fired', async () => {
    const { src } = await multiArch();
    const ctl = new AbortController();
    ctl.abort();
    const err = await caught(copy(src, 'multi', memoryTarget(), 'x', { signal: ctl.signal }));
    expect(isLadingError(err, 'ABORTED')).toBe(true);
  });

  it('stops mid-way and keeps the graph closed when aborted during the copy', async () => {
    const { src } = await multiArch(false);
    const dst = memoryTarget();
    const ctl = new AbortController();
    const rec = new RecordingTarget(dst, 2);
    let n = 0;
    const err = await caught(
      copy(src, 'multi', rec, 'x', {
        concurrency: 1,
        postCopy: () => {
          if (++n === 2) ctl.abort();
        },
        signal: ctl.signal,
      }),
    );
    expect(isLadingError(err, 'ABORTED') || (err as Error).name === 'AbortError').toBe(true);
    expect(dst.tags()).toEqual([]);
    expect(await danglingChildren(dst)).toEqual([]);
  });

  it('reports progress events for each blob and manifest', async () => {
    const { src } = await multiArch();
    const dst = memoryTarget();
    const progress = new ProgressEmitter();
    const events: ProgressEvent[] = [];
    progress.on('progress', (e) => events.push(e));
    await copy(src, 'multi', dst, 'x', { progress });
    const done = events.filter((e) => e.type === 'blob-done');
    const manifests = events.filter((e) => e.type === 'manifest-done');
    expect(manifests).toHaveLength(3);
    expect(done).toHaveLength(src.digests().length - 3);
    expect(done.filter((e) => 'kind' in e && e.kind === 'config')).toHaveLength(2);
    expect(events.some((e) => e.type === 'blob-progress')).toBe(true);
  });

  it('mounts blobs instead of copying them between repositories of one registry', async () => {
    const registry = new Map<string, MemoryTarget>();
    class Repo extends MemoryTarget implements Mounter {
      readonly registryHost = 'reg.example';
      readonly repository: string;
      fetches = 0;
      constructor(name: string) {
        super();
        this.repository = name;
        registry.set(name, this);
      }
      override fetch(d: Descriptor, o?: IoOptions) {
        this.fetches++;
        return super.fetch(d, o);
      }
      async mount(d: Descriptor, from: string): Promise<boolean> {
        const other = registry.get(from);
        if (other === undefined || !(await other.exists(d))) return false;
        await this.push(d, await MemoryTarget.prototype.fetch.call(other, d));
        return true;
      }
    }
    const a = new Repo('team/a');
    const img = await pushImage(a, { os: 'linux', architecture: 'amd64' }, ['x', 'y']);
    await a.tag(img.manifest, 'v1');
    const b = new Repo('team/b');
    const mounted: [string, string][] = [];
    await copy(a, 'v1', b, 'v1', { onMounted: (d, from) => mounted.push([d.digest, from]) });
    expect(mounted.map(([d]) => d).sort()).toEqual(
      [img.config.digest, ...img.layers.map((l) => l.digest)].sort(),
    );
    expect(mounted.every(([, from]) => from === 'team/a')).toBe(true);
    expect(a.fetches).toBe(1); // only the manifest was read
    expect((await b.resolve('v1')).digest).toBe(img.manifest.digest);
  });
});

describe('writeImageIndex', () => {
  it('writes every platform image, then the index, and copies one platform out', async () => {
    const amd = withPlatform(appendLayers(emptyImage(), layerFromBytes(tarBytes('amd'))), {
      os: 'linux',
      architecture: 'amd64',
    });
    const arm = withPlatform(appendLayers(emptyImage(), layerFromBytes(tarBytes('arm', 9000))), {
      os: 'linux',
      architecture: 'arm64',
    });
    const index = imageIndex([{ image: amd }, { image: arm }]);
    const t = memoryTarget();
    const rec = new RecordingTarget(t);
    const desc = await writeImageIndex(rec, 'v1', index);
    expect(desc.digest).toBe(await index.digest());
    expect(rec.pushed.at(-1)).toBe(desc.digest);
    expect(rec.pushed).toHaveLength(7);
    expect(await danglingChildren(t)).toEqual([]);
    expect((await t.resolve('v1')).digest).toBe(desc.digest);
    const dst = memoryTarget();
    const root = await copy(t, 'v1', dst, 'arm', { platform: 'linux/arm64' });
    expect(root.digest).toBe(await arm.digest());
  });
});

describe('writeImage', () => {
  it('writes stream layers, config, then manifest, and tags last when the target is a BlobWriter', async () => {
    const t = memoryTarget();
    const layers: Layer[] = [
      new OnceLayer(tarBytes('one', 5000)),
      layerFromBytes(tarBytes('two')),
      new OnceLayer(tarBytes('three')),
    ];
    const image = lazyImage(layers);
    const order: string[] = [];
    const orig = { pushUnknown: t.pushUnknown.bind(t), push: t.push.bind(t), tag: t.tag.bind(t) };
    t.pushUnknown = async (c, m, o) => {
      const d = await orig.pushUnknown(c, m, o);
      order.push(`layer:${d.digest}`);
      return d;
    };
    t.push = async (d, c, o) => {
      await orig.push(d, c, o);
      order.push(`${d.mediaType}:${d.digest}`);
    };
    t.tag = async (d, r, o) => {
      await orig.tag(d, r, o);
      order.push(`tag:${r}`);
    };
    const desc = await writeImage(t, 'v1', image);
    expect(desc.digest).toBe(await image.digest());
    const manifest = await image.manifest();
    expect(order.slice(0, 3).sort()).toEqual(
      manifest.layers
        .map((l) =>
          l.digest === layers[1]!.knownDescriptor?.()?.digest
            ? `${l.mediaType}:${l.digest}`
            : `layer:${l.digest}`,
        )
        .sort(),
    );
    expect(order.slice(3)).toEqual([
      `${MediaType.OciConfig}:${manifest.config.digest}`,
      `${MediaType.OciManifest}:${desc.digest}`,
      'tag:v1',
    ]);
    const dst = memoryTarget();
    await copy(t, 'v1', dst, 'v1');
    expect(new Set(dst.digests())).toEqual(new Set(t.digests()));
  });

  it('writes no config or manifest when a layer fails', async () => {
    const t = memoryTarget();
    const image = lazyImage([
      layerFromBytes(tarBytes('ok')),
      new OnceLayer(tarBytes('bad'), { fail: true }),
    ]);
    const err = await caught(writeImage(t, 'v1', image));
    expect((err as Error).message).toBe('source failed');
    expect(t.tags()).toEqual([]);
    expect(t.digests()).toHaveLength(1);
  });

  it('answers UNSUPPORTED for a stream layer when the target cannot take unknown digests', async () => {
    const inner = memoryTarget();
    const plain = new RecordingTarget(inner);
    const err = await caught(writeImage(plain, 'v1', lazyImage([new OnceLayer(tarBytes('s'))])));
    expect(isLadingError(err, 'UNSUPPORTED')).toBe(true);
    expect(inner.digests()).toEqual([]);
  });

  it('skips layers the target already has when their descriptor is known', async () => {
    const t = memoryTarget();
    const layer = layerFromBytes(tarBytes('known'));
    const d = layer.knownDescriptor?.();
    await t.push(d!, layer.compressed());
    const progress = new ProgressEmitter();
    const events: ProgressEvent[] = [];
    progress.on('progress', (e) => events.push(e));
    await writeImage(t, 'v1', lazyImage([layer]), { progress });
    expect(events.filter((e) => e.type === 'blob-skipped')).toHaveLength(1);
  });
});
