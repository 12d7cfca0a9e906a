import { afterEach, describe, expect, it } from 'vitest';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import {
  MediaType,
  copy,
  digestOf,
  isLadingError,
  layerFromBytes,
  memoryTarget,
  writeImage,
  type ConfigFile,
  type Descriptor,
  type ImageManifest,
  type MemoryTarget,
} from '@lading/core';
import {
  DockerArchive,
  DockerArchiveReader,
  DockerArchiveWriter,
  dockerArchive,
  normalizeRepoTag,
  ociLayout,
} from '../src/index.js';
import { OnceLayer, lazyImage, run, tarNames, tarOf, tempDir } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function scratch(): Promise<string> {
  const t = await tempDir();
  cleanups.push(t.cleanup);
  return t.dir;
}

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
    new OnceLayer(await tarOf({ 'srv/data.bin': Buffer.alloc(70_000, 7) })),
  ]);
}

function json(mem: MemoryTarget, d: Descriptor): unknown {
  return JSON.parse(Buffer.from(mem.bytes(d.digest)!).toString('utf8'));
}

describe('dockerArchive', () => {
  it('writes an archive and reads back the same config and diffIds', async () => {
    const dir = await scratch();
    const file = join(dir, 'image.tar');
    const image = await sampleImage();
    const out = dockerArchive(file, { mode: 'write' });
    await writeImage(out, 'example.com/team/app:v1', image);
    await out.close();
    const config = await image.configFile();
    const configDesc = await image.configDescriptor();
    const hexes = config.rootfs.diff_ids.map((d) => d.slice(7));
    const names = await tarNames(file);
    expect(new Set(names).size).toBe(names.length);
    const classic = [
      ...hexes.flatMap((h) => [`${h}/`, `${h}/layer.tar`]),
      `${configDesc.digest.slice(7)}.json`,
      'manifest.json',
      'repositories',
    ];
    const oci = [
      'oci-layout',
      'index.json',
      'blobs/',
      'blobs/sha256/',
      ...[...hexes, configDesc.digest.slice(7)].map((h) => `blobs/sha256/${h}`),
    ];
    expect(names.filter((n) => !classic.includes(n) && !oci.includes(n))).toHaveLength(1); // the OCI manifest
    const back = dockerArchive(file);
    expect(await back.images()).toEqual([
      expect.objectContaining({ repoTags: ['example.com/team/app:v1'] }),
    ]);
    const mem = memoryTarget();
    const root = await copy(back, 'example.com/team/app:v1', mem, 'x');
    // the OCI manifest written into the archive is what is served back
    expect(root.mediaType).toBe(MediaType.OciManifest);
    expect(names).toContain(`blobs/sha256/${root.digest.slice(7)}`);
    const manifest = json(mem, root) as ImageManifest;
    expect(manifest.config.digest).toBe(configDesc.digest);
    expect(manifest.layers.map((l) => l.digest)).toEqual(config.rootfs.diff_ids);
    expect(manifest.layers.every((l) => l.mediaType === MediaType.OciLayer)).toBe(true);
    // the archive is also an OCI layout: skopeo's oci-archive transport reads it
    const { stdout } = await run('skopeo', ['inspect', `oci-archive:${file}:v1`]);
    expect((JSON.parse(stdout) as { Digest: string }).Digest).toBe(root.digest);
    // the same image resolves by its short forms and by digest
    expect((await back.resolve('', {})).digest).toBe(root.digest);
    expect((await back.resolve(root.digest)).digest).toBe(root.digest);
    const repos = JSON.parse(
      Buffer.from(
        await (async () => {
          const chunks: Buffer[] = [];
          const extract = tar.extract();
          const done = (async () => {
            for await (const e of extract) {
              if (e.header.name === 'repositories')
                for await (const c of e) chunks.push(c as Buffer);
              else e.resume();
            }
          })();
          await pipeline(createReadStream(file), extract);
          await done;
          return Buffer.concat(chunks);
        })(),
      ).toString(),
    ) as Record<string, Record<string, string>>;
    expect(repos).toEqual({ 'example.com/team/app': { v1: hexes.at(-1) } });
  });

  it('is read by skopeo inspect when written by lading', async () => {
    const dir = await scratch();
    const file = join(dir, 'image.tar');
    const image = await sampleImage();
    const out = dockerArchive(file, { mode: 'write' });
    await writeImage(out, 'app:v1', image);
    await out.close();
    const { stdout } = await run('skopeo', ['inspect', `docker-archive:${file}`]);
    const info = JSON.parse(stdout) as {
      Layers: string[];
      RepoTags: string[];
      Architecture: string;
    };
    expect(info.Architecture).toBe('amd64');
    const config = await image.configFile();
    expect(info.Layers).toEqual(config.rootfs.diff_ids);
    const raw = await run('skopeo', ['inspect', '--config', '--raw', `docker-archive:${file}`]);
    expect(digestOf(Buffer.from(raw.stdout))).toBe((await image.configDescriptor()).digest);
  });

  it('reads an archive written by skopeo copy from a lading layout', async () => {
    const dir = await scratch();
    const layoutDir = join(dir, 'layout');
    const image = await sampleImage();
    await writeImage(ociLayout(layoutDir), 'v1', image);
    const file = join(dir, 'skopeo.tar');
    await run('skopeo', ['copy', `oci:${layoutDir}:v1`, `docker-archive:${file}:team/app:v1`]);
    const back = dockerArchive(file);
    const mem = memoryTarget();
    const root = await copy(back, 'team/app:v1', mem, 'x');
    const manifest = json(mem, root) as ImageManifest;
    const config = json(mem, manifest.config) as ConfigFile;
    expect(config.rootfs.diff_ids).toEqual((await image.configFile()).rootfs.diff_ids);
    expect(manifest.layers.map((l) => l.digest)).toEqual(config.rootfs.diff_ids);
    // a classic archive gets a synthesized OCI manifest over the uncompressed layers
    expect(root.mediaType).toBe(MediaType.OciManifest);
    expect(manifest.config.mediaType).toBe(MediaType.OciConfig);
    expect(manifest.layers.every((l) => l.mediaType === MediaType.OciLayer)).toBe(true);
    // docker.io/ normalisation: skopeo records team/app:v1
    expect((await back.resolve('docker.io/team/app:v1')).digest).toBe(root.digest);
  });

  it('keeps diffIds and the config digest along layout → archive → memory', async () => {
    const dir = await scratch();
    const layout = ociLayout(join(dir, 'layout'));
    const image = await sampleImage();
    const original = await writeImage(layout, 'v1', image);
    const file = join(dir, 'chain.tar');
    const out = dockerArchive(file, { mode: 'write' });
    await copy(layout, 'v1', out, 'chain:v1');
    await out.close();
    const mem = memoryTarget();
    const root = await copy(dockerArchive(file), 'chain:v1', mem, 'v1');
    const manifest = json(mem, root) as ImageManifest;
    expect(manifest.config.digest).toBe((await image.configDescriptor()).digest);
    expect((json(mem, manifest.config) as ConfigFile).rootfs.diff_ids).toEqual(
      (await image.configFile()).rootfs.diff_ids,
    );
    // the manifest digest changes: the archive stores the layers uncompressed
    expect(root.digest).not.toBe(original.digest);
    // and the archive of the chain is one skopeo reads
    const { stdout } = await run('skopeo', ['inspect', `docker-archive:${file}`]);
    expect((JSON.parse(stdout) as { Layers: string[] }).Layers).toEqual(
      (await image.configFile()).rootfs.diff_ids,
    );
  });

  it('copies a skopeo-written archive into a new archive keeping config and diffIds', async () => {
    const dir = await scratch();
    const layoutDir = join(dir, 'layout');
    const image = await sampleImage();
    await writeImage(ociLayout(layoutDir), 'v1', image);
    const first = join(dir, 'first.tar');
    await run('skopeo', ['copy', `oci:${layoutDir}:v1`, `docker-archive:${first}:a/b:1`]);
    const second = join(dir, 'second.tar');
    const out = dockerArchive(second, { mode: 'write' });
    await copy(dockerArchive(first), 'a/b:1', out, 'c/d:2');
    await out.close();
    const { stdout } = await run('skopeo', ['inspect', '--config', `docker-archive:${second}`]);
    const config = JSON.parse(stdout) as ConfigFile;
    expect(config.rootfs.diff_ids).toEqual((await image.configFile()).rootfs.diff_ids);
    const raw = await run('skopeo', ['inspect', '--config', '--raw', `docker-archive:${second}`]);
    expect(digestOf(Buffer.from(raw.stdout))).toBe((await image.configDescriptor()).digest);
  });

  it('serves the original OCI manifest from a docker 25 style archive', async () => {
    const dir = await scratch();
    const layoutDir = join(dir, 'layout');
    const layout = ociLayout(layoutDir);
    const image = await sampleImage();
    const desc = await writeImage(layout, 'latest', image);
    const manifest = await image.manifest();
    // docker 25 `save`: OCI layout + manifest.json into blobs/ + legacy symlinks
    const pack = tar.pack();
    const add = async (name: string, path: string) =>
      pack.entry({ name, mtime: new Date(0) }, await readFile(path));
    await add('oci-layout', join(layoutDir, 'oci-layout'));
    const index = JSON.parse(await readFile(join(layoutDir, 'index.json'), 'utf8')) as {
      manifests: Descriptor[];
    };
    index.manifests[0]!.annotations = {
      'io.containerd.image.name': 'docker.io/library/app:latest',
      'org.opencontainers.image.ref.name': 'latest',
    };
    pack.entry({ name: 'index.json' }, JSON.stringify(index));
    for (const d of [desc, manifest.config, ...manifest.layers]) {
      await add(
        `blobs/sha256/${d.digest.slice(7)}`,
        join(layoutDir, 'blobs/sha256', d.digest.slice(7)),
      );
    }
    const legacy = manifest.layers.map((l, i) => `legacy${i}/layer.tar`);
    manifest.layers.forEach((l, i) =>
      pack.entry({
        name: legacy[i]!,
        type: 'symlink',
        linkname: `../blobs/sha256/${l.digest.slice(7)}`,
      }),
    );
    pack.entry(
      { name: 'manifest.json' },
      JSON.stringify([
        {
          Config: `blobs/sha256/${manifest.config.digest.slice(7)}`,
          RepoTags: ['app:latest'],
          Layers: legacy,
        },
      ]),
    );
    pack.finalize();
    const file = join(dir, 'd25.tar');
    await pipeline(pack, createWriteStream(file));
    const back = dockerArchive(file);
    expect((await back.resolve('app')).digest).toBe(desc.digest);
    expect((await back.resolve('latest')).digest).toBe(desc.digest);
    const mem = memoryTarget();
    const root = await copy(back, 'docker.io/library/app:latest', mem, 'x');
    expect(root.digest).toBe(desc.digest);
    expect(new Set(mem.digests())).toEqual(
      new Set([desc.digest, manifest.config.digest, ...manifest.layers.map((l) => l.digest)]),
    );
  });

  it('writes an image whose manifest has a subject, and refuses a layer that is not a tar', async () => {
    const mem = memoryTarget();
    const base = await writeImage(
      mem,
      'base',
      lazyImage([layerFromBytes(await tarOf({ a: 'a' }))]),
    );
    const m = json(mem, base) as ImageManifest & { subject?: Descriptor };
    const variant = async (patch: Partial<ImageManifest> & { subject?: Descriptor }) => {
      const bytes = Buffer.from(JSON.stringify({ ...m, ...patch }));
      const desc = {
        mediaType: MediaType.OciManifest,
        digest: digestOf(bytes),
        size: bytes.length,
      };
      await mem.push(desc, Readable.from([bytes]));
      return desc;
    };
    const signed = await variant({ subject: base });
    const dir = await scratch();
    const file = join(dir, 'subject.tar');
    const out = dockerArchive(file, { mode: 'write' });
    await copy(mem, signed.digest, out, 'signed:1');
    await out.close();
    const back = dockerArchive(file);
    expect((await back.resolve('signed:1')).digest).toMatch(/^sha256:/);
    const layer = m.layers[0]!;
    const foreign = await variant({ layers: [{ ...layer, mediaType: 'application/x-foo' }] });
    const bad = dockerArchive(join(dir, 'foreign.tar'), { mode: 'write' });
    const err = await caught(
      copy(mem, foreign.digest, bad, 'foreign:1').finally(() => bad.close()),
    );
    expect(err).toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE' });
    expect((err as Error).message).toContain(
      '"application/x-foo": a docker archive holds tar layers only',
    );
  });

  it('fails the first push, before reading it, when FILE cannot be written', async () => {
    const dir = await scratch();
    const file = join(dir, 'missing', 'x.tar');
    const out = dockerArchive(file, { mode: 'write', tmpDir: dir });
    const layer = new OnceLayer(await tarOf({ a: 'a' }));
    const err = await caught(writeImage(out, 'a:1', lazyImage([layer])));
    expect(err).toMatchObject({ code: 'IO', path: file });
    await out.close().catch(() => undefined);
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses indexes, read-mode pushes, unknown refs and gzip archives with codes', async () => {
    const dir = await scratch();
    const file = join(dir, 'x.tar');
    const out = dockerArchive(file, { mode: 'write' });
    const index = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] }),
    );
    const idesc = { mediaType: MediaType.OciIndex, digest: digestOf(index), size: index.length };
    await out.push(idesc, Readable.from([index]));
    expect(isLadingError(await caught(out.tag(idesc, 'x:1')), 'UNSUPPORTED')).toBe(true);
    await writeImage(out, 'ok:1', lazyImage([layerFromBytes(await tarOf({ a: 'a' }))]));
    await out.close();
    const back = dockerArchive(file);
    expect(isLadingError(await caught(back.resolve('missing:1')), 'NOT_FOUND')).toBe(true);
    expect(
      isLadingError(await caught(back.push(idesc, Readable.from([index]))), 'UNSUPPORTED'),
    ).toBe(true);
    const gz = join(dir, 'x.tar.gz');
    await writeFile(gz, gzipSync(await readFile(file)));
    expect(isLadingError(await caught(dockerArchive(gz).resolve('ok:1')), 'UNSUPPORTED')).toBe(
      true,
    );
    expect(
      isLadingError(await caught(dockerArchive(join(dir, 'none.tar')).resolve('a')), 'NOT_FOUND'),
    ).toBe(true);
  });

  it('refuses a layer that does not decompress with INVALID_LAYER, and discard() leaves no spool', async () => {
    const dir = await scratch();
    const spool = join(dir, 'spool');
    await mkdir(spool);
    const out = new DockerArchiveWriter(join(dir, 'bad.tar'), { tmpDir: spool });
    // gzip's magic, then bytes that are no deflate stream.
    const bad = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff]);
    const err = await caught(out.pushUnknown(Readable.from([bad]), MediaType.OciLayerGzip));
    expect(isLadingError(err, 'INVALID_LAYER'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/^a .*tar\+gzip layer does not decompress: /);
    expect(await readdir(spool)).toHaveLength(1); // the spool directory, its file removed
    await out.discard();
    expect(await readdir(spool)).toEqual([]);
  });

  it('opens a reader or a writer by mode, each refusing the other side with UNSUPPORTED', async () => {
    const dir = await scratch();
    const file = join(dir, 'modes.tar');
    const out = dockerArchive(file, { mode: 'write' });
    expect(out).toBeInstanceOf(DockerArchiveWriter);
    expect(out).toBeInstanceOf(DockerArchive);
    expect(out.mode).toBe('write');
    expect(isLadingError(await caught(out.images()), 'UNSUPPORTED')).toBe(true);
    await writeImage(out, 'm:1', lazyImage([layerFromBytes(await tarOf({ m: 'm' }))]));
    await out.close();
    expect(
      isLadingError(await caught(out.pushUnknown(Readable.from(['x']), 'a/b')), 'INVALID_ARGUMENT'),
    ).toBe(true);
    const back = dockerArchive(file);
    expect(back).toBeInstanceOf(DockerArchiveReader);
    expect(back).toBeInstanceOf(DockerArchive);
    expect(back.mode).toBe('read');
    const content = Readable.from([Buffer.from('x')]);
    expect(isLadingError(await caught(back.pushUnknown(content, 'a/b')), 'UNSUPPORTED')).toBe(true);
    expect(content.destroyed).toBe(true);
    const [image] = await back.images();
    expect(isLadingError(await caught(back.tag(image!.manifest, 'n:1')), 'UNSUPPORTED')).toBe(true);
    await back.close();
    expect(isLadingError(await caught(back.images()), 'INVALID_ARGUMENT')).toBe(true);
  });

  it('fails the fetch with DIGEST_MISMATCH when a layer does not match its diffId', async () => {
    const dir = await scratch();
    const file = join(dir, 'bad.tar');
    const layerTar = await tarOf({ a: 'a' });
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [digestOf('something else')] },
      }),
    );
    const pack = tar.pack();
    pack.entry({ name: 'l/layer.tar' }, layerTar);
    pack.entry({ name: 'c.json' }, config);
    pack.entry(
      { name: 'manifest.json' },
      JSON.stringify([{ Config: 'c.json', RepoTags: ['bad:1'], Layers: ['l/layer.tar'] }]),
    );
    pack.finalize();
    await pipeline(pack, createWriteStream(file));
    const err = await caught(copy(dockerArchive(file), 'bad:1', memoryTarget(), 'x'));
    expect(isLadingError(err, 'DIGEST_MISMATCH')).toBe(true);
  });
});

describe('dockerArchive with several images', () => {
  it('stores a shared layer once and serves every image by its tag', async () => {
    const dir = await scratch();
    const file = join(dir, 'two.tar');
    const base = await tarOf({ 'etc/os-release': 'ID=lading\n' });
    const a = lazyImage([layerFromBytes(base), layerFromBytes(await tarOf({ a: 'a' }))]);
    const b = lazyImage(
      [new OnceLayer(base), new OnceLayer(await tarOf({ b: 'b' }))],
      { os: 'linux', architecture: 'amd64' },
      MediaType.DockerManifest,
    );
    const out = dockerArchive(file, { mode: 'write' });
    await writeImage(out, 'multi/a:1', a);
    await writeImage(out, 'multi/b:1', b);
    await out.close();
    const names = await tarNames(file);
    const baseHex = digestOf(base).slice(7);
    expect(names.filter((n) => n === `${baseHex}/layer.tar`)).toHaveLength(1);
    const back = dockerArchive(file);
    expect((await back.images()).map((i) => i.repoTags)).toEqual([['multi/a:1'], ['multi/b:1']]);
    for (const [tag, image] of [
      ['multi/a:1', a],
      ['multi/b:1', b],
    ] as const) {
      const mem = memoryTarget();
      const root = await copy(back, tag, mem, 'x');
      const manifest = json(mem, root) as ImageManifest;
      expect(manifest.config.digest).toBe((await image.configDescriptor()).digest);
      const { stdout } = await run('skopeo', ['inspect', `docker-archive:${file}:${tag}`]);
      expect((JSON.parse(stdout) as { Layers: string[] }).Layers).toEqual(
        (await image.configFile()).rootfs.diff_ids,
      );
    }
    expect(isLadingError(await caught(back.resolve('')), 'INVALID_ARGUMENT')).toBe(true);
  });
});

describe('normalizeRepoTag', () => {
  it.each([
    ['busybox', 'busybox:latest'],
    ['docker.io/library/busybox:1', 'busybox:1'],
    ['localhost:5000/a/b', 'localhost:5000/a/b:latest'],
    ['localhost:5000/a/b:2', 'localhost:5000/a/b:2'],
  ])('writes %s as %s', (input, want) => {
    expect(normalizeRepoTag(input)).toBe(want);
  });
});
