import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { gzipSync } from 'node:zlib';
import { blockGzipSync } from '../src/internal-api.js';
import {
  MediaType,
  appendLayers,
  type DigestMismatchError,
  emptyImage,
  imageIndex,
  isLadingError,
  layerFromBytes,
  parseConfigFile,
  parseImageManifest,
  validateImage,
  withAnnotations,
  withConfig,
  withCreated,
  withMediaTypeFamily,
  withPlatform,
  zstdAvailable,
  type ConfigFile,
  type Descriptor,
  type Digest,
  type Image,
  type ImageManifest,
  type Layer,
} from '../src/index.js';

const sha = (b: Uint8Array | string) =>
  `sha256:${createHash('sha256').update(b).digest('hex')}` as Digest;
const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** ManualLayer is a layer whose identity promises the test settles by hand. */
class ManualLayer implements Layer {
  readonly mediaType = MediaType.OciLayerGzip;
  readonly blob: Buffer;
  readonly tar: Buffer;
  readonly d = deferred<Digest>();
  readonly id = deferred<Digest>();
  readonly s = deferred<number>();
  constructor(tar: string) {
    this.tar = Buffer.from(tar);
    this.blob = gzipSync(this.tar);
  }
  digest() {
    return this.d.promise;
  }
  diffId() {
    return this.id.promise;
  }
  size() {
    return this.s.promise;
  }
  compressed() {
    return Readable.from([this.blob]);
  }
  uncompressed() {
    return Readable.from([this.tar]);
  }
}

/** settled tracks whether a promise has settled, without awaiting it. */
function track<T>(p: Promise<T>) {
  const state = { settled: false, value: undefined as T | undefined, error: undefined as unknown };
  p.then(
    (v) => {
      state.settled = true;
      state.value = v;
    },
    (e: unknown) => {
      state.settled = true;
      state.error = e;
    },
  );
  return state;
}

const flush = async () => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

describe('appendLayers laziness', () => {
  it('keeps configFile pending until diffIds resolve and manifest until digests and sizes do', async () => {
    const layer = new ManualLayer('lazy layer contents');
    const img = appendLayers(emptyImage(), layer);
    const config = track(img.configFile());
    const configDesc = track(img.configDescriptor());
    const manifest = track(img.manifest());
    const digest = track(img.digest());
    await flush();
    expect([config.settled, configDesc.settled, manifest.settled, digest.settled]).toEqual([
      false,
      false,
      false,
      false,
    ]);

    layer.id.resolve(sha(layer.tar));
    await flush();
    expect(config.settled).toBe(true);
    expect(configDesc.settled).toBe(true);
    expect(config.value?.rootfs.diff_ids).toEqual([sha(layer.tar)]);
    expect(manifest.settled).toBe(false);
    expect(digest.settled).toBe(false);

    layer.d.resolve(sha(layer.blob));
    await flush();
    expect(manifest.settled).toBe(false);
    expect(digest.settled).toBe(false);

    layer.s.resolve(layer.blob.length);
    await flush();
    expect(manifest.settled).toBe(true);
    expect(digest.settled).toBe(true);
    expect(manifest.value?.layers).toEqual([
      { mediaType: MediaType.OciLayerGzip, digest: sha(layer.blob), size: layer.blob.length },
    ]);
    expect(digest.value).toBe(sha(await img.rawManifest()));
    await validateImage(img);
  });

  it('rejects configFile and manifest with the layer error when the layer fails', async () => {
    const layer = new ManualLayer('x');
    const img = appendLayers(emptyImage(), layer);
    const boom = Object.assign(new Error('stream broke'), { code: 'UPLOAD_FAILED' });
    layer.id.reject(boom);
    layer.d.reject(boom);
    layer.s.reject(boom);
    await expect(img.configFile()).rejects.toBe(boom);
    await expect(img.digest()).rejects.toBe(boom);
  });
});

describe('appendLayers output', () => {
  it('produces the hand-computed manifest and config over layerFromBytes', async () => {
    const tar1 = Buffer.from('first layer tar bytes');
    const tar2 = Buffer.from('second layer tar bytes');
    // layerFromBytes gzips as the block gzip of the layers package does (level 1).
    const gz1 = blockGzipSync(tar1, 1);
    const gz2 = blockGzipSync(tar2, 1);
    const img = appendLayers(emptyImage(), layerFromBytes(tar1), {
      layer: layerFromBytes(tar2),
      history: { created_by: 'COPY . /app' },
      annotations: { a: '1' },
    });

    const expectedConfig =
      '{"architecture":"amd64","os":"linux","config":{},' +
      `"rootfs":{"type":"layers","diff_ids":["${sha(tar1)}","${sha(tar2)}"]},` +
      '"history":[{"created_by":"lading"},{"created_by":"COPY . /app"}]}';
    expect(text(await img.rawConfig())).toBe(expectedConfig);

    const expectedManifest =
      '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",' +
      `"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"${sha(expectedConfig)}","size":${expectedConfig.length}},` +
      '"layers":[' +
      `{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"${sha(gz1)}","size":${gz1.length}},` +
      `{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"${sha(gz2)}","size":${gz2.length},"annotations":{"a":"1"}}` +
      ']}';
    expect(text(await img.rawManifest())).toBe(expectedManifest);
    expect(await img.digest()).toBe(sha(expectedManifest));
    expect(await img.size()).toBe(expectedManifest.length);
    expect(img.mediaType).toBe(MediaType.OciManifest);
    const layers = await img.layers();
    expect(layers).toHaveLength(2);
    expect(layers[1]?.annotations).toEqual({ a: '1' });
    await validateImage(img);
  });

  it('gives the same digest for the same input built twice', async () => {
    const build = () =>
      withCreated(
        withAnnotations(
          withConfig(appendLayers(emptyImage(), layerFromBytes(Buffer.from('same'))), {
            env: { PATH: '/bin', HOME: '/root' },
            labels: { z: '1', a: '2' },
            exposedPorts: ['80', '443/tcp'],
          }),
          { 'org.opencontainers.image.title': 't', b: 'x' },
        ),
        new Date('2024-01-02T03:04:05Z'),
      );
    const a = build();
    const b = build();
    const da = await a.digest();
    expect(await a.digest()).toBe(da);
    expect(await b.digest()).toBe(da);
    expect(text(await b.rawManifest())).toBe(text(await a.rawManifest()));
    // Key order of maps does not matter.
    const c = withAnnotations(emptyImage(), { b: '1', a: '2' });
    const d = withAnnotations(emptyImage(), { a: '2', b: '1' });
    expect(await c.digest()).toBe(await d.digest());
    expect(await emptyImage().digest()).toBe(await emptyImage().digest());
  });

  it('gives the same image whether layers are appended one call at a time or all at once', async () => {
    const layers = Array.from({ length: 200 }, (_, i) => layerFromBytes(Buffer.from(`l${i}`)));
    let nested = emptyImage();
    for (const l of layers) nested = appendLayers(nested, l);
    const flat = appendLayers(emptyImage(), ...layers);
    expect(await nested.digest()).toBe(await flat.digest());
    expect(await nested.layers()).toEqual(layers);
  });

  it('returns copies, so callers cannot corrupt the memoized values', async () => {
    const img = appendLayers(emptyImage(), layerFromBytes(Buffer.from('q')));
    const m = await img.manifest();
    m.layers.length = 0;
    const c = await img.configFile();
    c.rootfs.diff_ids.length = 0;
    expect((await img.manifest()).layers).toHaveLength(1);
    expect((await img.configFile()).rootfs.diff_ids).toHaveLength(1);
    await validateImage(img);
  });
});

describe('emptyImage', () => {
  it('is an OCI linux/amd64 image with no layers by default', async () => {
    const img = emptyImage();
    expect(text(await img.rawConfig())).toBe(
      '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}',
    );
    const m = await img.manifest();
    expect(m.mediaType).toBe(MediaType.OciManifest);
    expect(m.config.mediaType).toBe(MediaType.OciConfig);
    expect(m.layers).toEqual([]);
    await validateImage(img);
  });

  it('takes a platform and the Docker family as options', async () => {
    const img = emptyImage({
      mediaTypeFamily: 'docker',
      platform: { architecture: 'arm64', os: 'linux', variant: 'v8' },
    });
    const cfg = await img.configFile();
    expect([cfg.architecture, cfg.os, cfg.variant]).toEqual(['arm64', 'linux', 'v8']);
    expect(img.mediaType).toBe(MediaType.DockerManifest);
    expect((await img.configDescriptor()).mediaType).toBe(MediaType.DockerConfig);
    await validateImage(img);
  });

  it('rejects a bad family or platform with INVALID_ARGUMENT', () => {
    expect(() => emptyImage({ mediaTypeFamily: 'rkt' as 'oci' })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(() => emptyImage({ platform: { architecture: '', os: 'linux' } })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });
});

describe('withConfig', () => {
  it('merges env by key, in both forms, and removes null entries', async () => {
    const a = withConfig(emptyImage(), { env: ['A=1', 'B=2', 'PATH=/bin'] });
    const b = withConfig(a, { env: { B: '3', C: '4=x', A: null } });
    const c = withConfig(b, { env: ['PATH=/usr/bin:/bin'] });
    expect((await c.configFile()).config?.Env).toEqual(['B=3', 'PATH=/usr/bin:/bin', 'C=4=x']);
    expect((await a.configFile()).config?.Env).toEqual(['A=1', 'B=2', 'PATH=/bin']);
    await validateImage(c);
  });

  it('merges labels, ports and volumes and replaces scalar fields', async () => {
    const a = withConfig(emptyImage(), {
      labels: { a: '1', b: '2' },
      exposedPorts: ['8080', '53/UDP'],
      volumes: ['/data'],
      workingDir: '/app',
      user: '1000:1000',
      stopSignal: 'SIGTERM',
    });
    const b = withConfig(a, {
      labels: { b: null, c: '3' },
      exposedPorts: ['9000-9001/tcp'],
      volumes: ['/cache'],
      workingDir: '/srv',
    });
    const cfg = (await b.configFile()).config;
    expect(cfg).toEqual({
      Labels: { a: '1', c: '3' },
      ExposedPorts: { '8080/tcp': {}, '53/udp': {}, '9000-9001/tcp': {} },
      Volumes: { '/data': {}, '/cache': {} },
      WorkingDir: '/srv',
      User: '1000:1000',
      StopSignal: 'SIGTERM',
    });
    const raw = text(await b.rawConfig());
    expect(raw).toContain(
      '"config":{"User":"1000:1000","ExposedPorts":{"53/udp":{},"8080/tcp":{},"9000-9001/tcp":{}},"Volumes":{"/cache":{},"/data":{}},"WorkingDir":"/srv","Labels":{"a":"1","c":"3"},"StopSignal":"SIGTERM"}',
    );
  });

  it('clears the base Cmd when only the entrypoint is set, as a Dockerfile does', async () => {
    const base = withConfig(emptyImage(), { entrypoint: ['/bin/sh', '-c'], cmd: ['echo hi'] });
    expect((await base.configFile()).config).toMatchObject({
      Entrypoint: ['/bin/sh', '-c'],
      Cmd: ['echo hi'],
    });
    const ep = withConfig(base, { entrypoint: ['/app'] });
    expect((await ep.configFile()).config).toEqual({ Entrypoint: ['/app'] });
    // No null field reaches the config's bytes.
    expect(Buffer.from(await ep.rawConfig()).toString('utf8')).not.toContain('null');
    const cleared = withConfig(base, { entrypoint: null, cmd: null });
    expect((await cleared.configFile()).config).toEqual({});
    const cmd = withConfig(base, { cmd: ['run'] });
    expect((await cmd.configFile()).config).toMatchObject({
      Entrypoint: ['/bin/sh', '-c'],
      Cmd: ['run'],
    });
  });

  it.each([
    [{ env: ['NOEQUALS'] }],
    [{ env: ['=x'] }],
    [{ env: { 'A=B': 'x' } }],
    [{ exposedPorts: ['http'] }],
    [{ exposedPorts: ['70000/tcp'] }],
    [{ exposedPorts: ['80/icmp'] }],
    [{ volumes: [''] }],
    [{ entrypoint: 'sh' as unknown as string[] }],
  ])('rejects %j with INVALID_ARGUMENT when the patch is malformed', (patch) => {
    expect(() => withConfig(emptyImage(), patch)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });
});

describe('withCreated / withPlatform / withAnnotations', () => {
  it('sets config.created and every history entry created', async () => {
    const img = withCreated(
      appendLayers(
        emptyImage(),
        layerFromBytes(Buffer.from('a')),
        layerFromBytes(Buffer.from('b')),
      ),
      new Date('2020-05-06T07:08:09Z'),
    );
    const cfg = await img.configFile();
    expect(cfg.created).toBe('2020-05-06T07:08:09Z');
    expect(cfg.history?.map((h) => h.created)).toEqual([
      '2020-05-06T07:08:09Z',
      '2020-05-06T07:08:09Z',
    ]);
    expect(() => withCreated(emptyImage(), 'not a date')).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    await validateImage(img);
  });

  it('with history: false sets config.created only, keeping the history dates of a base', async () => {
    const base = withCreated(
      appendLayers(emptyImage(), layerFromBytes(Buffer.from('a'))),
      new Date('2024-05-01T00:00:00Z'),
    );
    const img = withCreated(
      appendLayers(base, {
        layer: layerFromBytes(Buffer.from('b')),
        history: { created: '1970-01-01T00:00:00Z', created_by: 'top' },
      }),
      0,
      { history: false },
    );
    const cfg = await img.configFile();
    expect(cfg.created).toBe('1970-01-01T00:00:00Z');
    expect(cfg.history?.map((h) => h.created)).toEqual([
      '2024-05-01T00:00:00Z',
      '1970-01-01T00:00:00Z',
    ]);
    await validateImage(img);
  });

  it('replaces every platform field, dropping a stale variant', async () => {
    const arm = withPlatform(emptyImage(), { architecture: 'arm64', os: 'linux', variant: 'v8' });
    const amd = withPlatform(arm, { architecture: 'amd64', os: 'linux' });
    const cfg = await amd.configFile();
    expect(cfg.architecture).toBe('amd64');
    expect('variant' in cfg).toBe(false);
    expect((await arm.configFile()).variant).toBe('v8');
  });

  it('adds manifest annotations and keeps the config bytes', async () => {
    const base = appendLayers(emptyImage(), layerFromBytes(Buffer.from('z')));
    const img = withAnnotations(withAnnotations(base, { a: '1', b: '2' }), { b: '3' });
    expect((await img.manifest()).annotations).toEqual({ a: '1', b: '3' });
    expect(await img.rawConfig()).toEqual(await base.rawConfig());
    expect(await img.digest()).not.toBe(await base.digest());
    await validateImage(img);
  });
});

describe('media type families', () => {
  it('keeps Docker types for layers appended to a Docker base', async () => {
    const base = emptyImage({ mediaTypeFamily: 'docker' });
    const img = withConfig(appendLayers(base, layerFromBytes(Buffer.from('tar'))), {
      cmd: ['x'],
    });
    const m = await img.manifest();
    expect(img.mediaType).toBe(MediaType.DockerManifest);
    expect(m.mediaType).toBe(MediaType.DockerManifest);
    expect(m.config.mediaType).toBe(MediaType.DockerConfig);
    expect(m.layers[0]?.mediaType).toBe(MediaType.DockerLayerGzip);
    expect((await img.layers())[0]?.mediaType).toBe(MediaType.DockerLayerGzip);
    await validateImage(img);
  });

  it('switches every media type, but no digest of a blob, when asked for another family', async () => {
    const docker = appendLayers(
      emptyImage({ mediaTypeFamily: 'docker' }),
      layerFromBytes(Buffer.from('tar')),
    );
    const oci = withMediaTypeFamily(docker, 'oci');
    const [dm, om] = [await docker.manifest(), await oci.manifest()];
    expect(om.mediaType).toBe(MediaType.OciManifest);
    expect(om.config).toEqual({ ...dm.config, mediaType: MediaType.OciConfig });
    expect(om.layers).toEqual(dm.layers.map((l) => ({ ...l, mediaType: MediaType.OciLayerGzip })));
    expect((await oci.layers())[0]?.mediaType).toBe(MediaType.OciLayerGzip);
    await validateImage(oci);
    const back = withMediaTypeFamily(oci, 'docker');
    expect(await back.digest()).toBe(await docker.digest());
  });

  it('leaves layer types with no counterpart as they are', async () => {
    const img = appendLayers(
      emptyImage({ mediaTypeFamily: 'docker' }),
      layerFromBytes(Buffer.from('plain tar'), { compression: 'none' }),
    );
    expect((await img.manifest()).layers[0]?.mediaType).toBe(MediaType.OciLayer);
    await validateImage(img);
  });
});

/** SpyLayer is a base layer that must never be read or asked for its identity. */
class SpyLayer implements Layer {
  readonly mediaType = MediaType.DockerLayerGzip;
  touched = 0;
  #touch(): never {
    this.touched++;
    throw new Error('a base layer was read');
  }
  digest(): Promise<Digest> {
    return this.#touch();
  }
  diffId(): Promise<Digest> {
    return this.#touch();
  }
  size(): Promise<number> {
    return this.#touch();
  }
  compressed(): Readable {
    return this.#touch();
  }
  uncompressed(): Readable {
    return this.#touch();
  }
}

/** ForeignImage is an Image from "elsewhere": raw bytes and opaque layers. */
class ForeignImage implements Image {
  readonly mediaType: string = MediaType.DockerManifest;
  constructor(
    readonly raw: Uint8Array,
    readonly config: Uint8Array,
    readonly spies: Layer[],
  ) {}
  manifest() {
    return Promise.resolve(parseImageManifest(this.raw));
  }
  rawManifest() {
    return Promise.resolve(this.raw);
  }
  configFile(): Promise<ConfigFile> {
    return Promise.resolve(parseConfigFile(this.config));
  }
  rawConfig() {
    return Promise.resolve(this.config);
  }
  configDescriptor(): Promise<Descriptor> {
    return Promise.resolve(parseImageManifest(this.raw).config);
  }
  digest() {
    return Promise.resolve(sha(this.raw));
  }
  size() {
    return Promise.resolve(this.raw.length);
  }
  layers() {
    return Promise.resolve(this.spies);
  }
}

function foreignBase() {
  const diffIds = [sha('base-0'), sha('base-1')];
  const config = Buffer.from(
    JSON.stringify({
      os: 'linux',
      architecture: 'amd64',
      docker_version: '24.0.0',
      config: { Env: ['PATH=/usr/bin'], Cmd: ['bash'], Labels: null },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: [{ created_by: 'ADD rootfs' }, { created_by: 'RUN x' }],
    }),
  );
  const layers: Descriptor[] = [
    { mediaType: MediaType.DockerLayerGzip, size: 111, digest: sha('blob-0') },
    { mediaType: MediaType.DockerLayerGzip, size: 222, digest: sha('blob-1') },
  ];
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.DockerManifest,
    config: { mediaType: MediaType.DockerConfig, size: config.length, digest: sha(config) },
    layers,
  };
  const spies = [new SpyLayer(), new SpyLayer()];
  return {
    base: new ForeignImage(Buffer.from(JSON.stringify(manifest)), config, spies),
    layers,
    diffIds,
    spies,
  };
}

describe('mutating a base image from elsewhere', () => {
  it('describes base layers from its manifest and config without reading them', async () => {
    const { base, layers, diffIds, spies } = foreignBase();
    const tar = Buffer.from('new layer');
    const img = withConfig(appendLayers(base, layerFromBytes(tar)), { env: { A: 'b' } });
    const m = await img.manifest();
    expect(m.mediaType).toBe(MediaType.DockerManifest);
    expect(m.layers.slice(0, 2)).toEqual(layers);
    expect(m.layers[2]).toMatchObject({ mediaType: MediaType.DockerLayerGzip });
    const cfg = await img.configFile();
    expect(cfg.rootfs.diff_ids).toEqual([...diffIds, sha(tar)]);
    expect(cfg.config?.Env).toEqual(['PATH=/usr/bin', 'A=b']);
    expect(cfg.docker_version).toBe('24.0.0');
    expect(cfg.history?.map((h) => h.created_by)).toEqual(['ADD rootfs', 'RUN x', 'lading']);
    const all = await img.layers();
    expect(all[0]).toBe(spies[0]);
    expect(all[1]).toBe(spies[1]);
    expect(all).toHaveLength(3);
    expect(await img.digest()).toBe(sha(await img.rawManifest()));
    expect(spies.map((s) => s.touched)).toEqual([0, 0]);
    // validateImage reads layers, so it must fail on the spies: proof it checks bytes.
    await expect(validateImage(img)).rejects.toMatchObject({ code: 'IO' });
    await expect(validateImage(img, { layers: false })).rejects.toThrow('a base layer was read');
  });

  it('passes the base config bytes through when only annotations change', async () => {
    const { base } = foreignBase();
    const img = withAnnotations(base, { x: 'y' });
    expect(await img.rawConfig()).toBe(base.config);
    expect(await appendLayers(base).rawConfig()).toBe(base.config);
    expect((await img.manifest()).config).toEqual((await base.manifest()).config);
  });
});

describe('validateImage', () => {
  it('reports DIGEST_MISMATCH when a layer lies about its digest', async () => {
    const good = layerFromBytes(Buffer.from('honest'));
    const liar: Layer = {
      mediaType: good.mediaType,
      digest: () => Promise.resolve(sha('something else')),
      diffId: () => good.diffId(),
      size: () => good.size(),
      compressed: () => good.compressed(),
      uncompressed: () => good.uncompressed(),
    };
    const err: unknown = await validateImage(appendLayers(emptyImage(), liar)).catch(
      (e: unknown) => e,
    );
    expect(isLadingError(err, 'DIGEST_MISMATCH')).toBe(true);
    expect((err as DigestMismatchError).diffId).toBe(false);
  });

  it('reports DIGEST_MISMATCH when a layer lies about its diffId', async () => {
    const good = layerFromBytes(Buffer.from('honest'));
    const liar: Layer = {
      mediaType: good.mediaType,
      digest: () => good.digest(),
      diffId: () => Promise.resolve(sha('other tar')),
      size: () => good.size(),
      compressed: () => good.compressed(),
      uncompressed: () => good.uncompressed(),
    };
    const err: unknown = await validateImage(appendLayers(emptyImage(), liar)).catch(
      (e: unknown) => e,
    );
    expect(isLadingError(err, 'DIGEST_MISMATCH')).toBe(true);
    expect((err as Error).message).toContain('diff_ids[0]');
    expect((err as DigestMismatchError).diffId).toBe(true);
  });

  it('reports SIZE_MISMATCH when a layer lies about its size', async () => {
    const good = layerFromBytes(Buffer.from('honest'));
    const liar: Layer = {
      mediaType: good.mediaType,
      digest: () => good.digest(),
      diffId: () => good.diffId(),
      size: async () => (await good.size()) + 1,
      compressed: () => good.compressed(),
      uncompressed: () => good.uncompressed(),
    };
    const err: unknown = await validateImage(appendLayers(emptyImage(), liar)).catch(
      (e: unknown) => e,
    );
    expect(isLadingError(err, 'SIZE_MISMATCH')).toBe(true);
  });

  it('reports INVALID_LAYER for a layer that does not decompress, or has data after its last member or frame', async () => {
    const tar = Buffer.alloc(1024);
    const blobLayer = (mediaType: string, blob: Buffer): Layer => ({
      mediaType,
      digest: () => Promise.resolve(sha(blob)),
      diffId: () => Promise.resolve(sha(tar)),
      size: () => Promise.resolve(blob.length),
      compressed: () => Readable.from([blob]),
      uncompressed: () => Readable.from([tar]),
    });
    const gz = gzipSync(tar);
    const cases: { mediaType: string; blob: Buffer }[] = [
      { mediaType: MediaType.OciLayerGzip, blob: Buffer.from('not gzip at all') },
      { mediaType: MediaType.OciLayerGzip, blob: Buffer.concat([gz, Buffer.from('junk')]) },
      // Node's gunzip stops at a zero byte after a member and drops the rest
      { mediaType: MediaType.OciLayerGzip, blob: Buffer.concat([gz, Buffer.from('\0junk')]) },
      {
        mediaType: MediaType.OciLayerGzip,
        blob: Buffer.concat([gz, Buffer.alloc(600), Buffer.from('junk')]),
      },
    ];
    if (zstdAvailable()) {
      const zs = (zlib as unknown as { zstdCompressSync: (b: Buffer) => Buffer }).zstdCompressSync(
        tar,
      );
      for (const tail of [Buffer.alloc(8), Buffer.from('junk')])
        cases.push({ mediaType: MediaType.OciLayerZstd, blob: Buffer.concat([zs, tail]) });
    }
    for (const c of cases) {
      const err: unknown = await validateImage(
        appendLayers(emptyImage(), blobLayer(c.mediaType, c.blob)),
      ).catch((e: unknown) => e);
      expect(isLadingError(err, 'INVALID_LAYER')).toBe(true);
      expect((err as Error).message).toMatch(/^layer 0 does not decompress: \S/);
    }
    // Zero padding after the last gzip member is read past, as GNU gzip does.
    await validateImage(
      appendLayers(
        emptyImage(),
        blobLayer(MediaType.OciLayerGzip, Buffer.concat([gz, Buffer.alloc(512)])),
      ),
    );
  });

  it('reports INVALID_CONFIG when diff_ids and layers disagree in number', async () => {
    const img = layerFromBytes(Buffer.from('one'));
    const built = appendLayers(emptyImage(), img);
    const m = await built.manifest();
    const cfg = await built.configFile();
    cfg.rootfs.diff_ids.push(sha('extra'));
    const rawCfg = Buffer.from(JSON.stringify(cfg));
    m.config = { ...m.config, digest: sha(rawCfg), size: rawCfg.length };
    const broken = new (class extends ForeignImage {
      override readonly mediaType = MediaType.OciManifest;
    })(Buffer.from(JSON.stringify(m)), rawCfg, [img]);
    const err: unknown = await validateImage(broken).catch((e: unknown) => e);
    expect(isLadingError(err, 'INVALID_CONFIG')).toBe(true);
  });
});

describe('imageIndex', () => {
  it('builds an OCI index whose descriptors carry each image platform', async () => {
    const amd = appendLayers(emptyImage(), layerFromBytes(Buffer.from('amd')));
    const arm = withPlatform(appendLayers(emptyImage(), layerFromBytes(Buffer.from('arm'))), {
      architecture: 'arm64',
      os: 'linux',
      variant: 'v8',
    });
    const win = emptyImage();
    const index = imageIndex(
      [
        { image: amd },
        { image: arm, annotations: { note: 'arm' } },
        { image: win, platform: { architecture: 'amd64', os: 'windows', 'os.version': '10.0' } },
      ],
      { annotations: { 'org.opencontainers.image.ref.name': 'v1' } },
    );
    const m = await index.indexManifest();
    expect(index.mediaType).toBe(MediaType.OciIndex);
    expect(m.manifests).toEqual([
      {
        mediaType: MediaType.OciManifest,
        digest: await amd.digest(),
        size: await amd.size(),
        platform: { architecture: 'amd64', os: 'linux' },
      },
      {
        mediaType: MediaType.OciManifest,
        digest: await arm.digest(),
        size: await arm.size(),
        annotations: { note: 'arm' },
        platform: { architecture: 'arm64', os: 'linux', variant: 'v8' },
      },
      {
        mediaType: MediaType.OciManifest,
        digest: await win.digest(),
        size: await win.size(),
        platform: { architecture: 'amd64', os: 'windows', 'os.version': '10.0' },
      },
    ]);
    expect(m.annotations).toEqual({ 'org.opencontainers.image.ref.name': 'v1' });
    expect(await index.image(await arm.digest())).toBe(arm);
    await expect(index.image(sha('missing'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await index.digest()).toBe(sha(await index.rawManifest()));
    const again = imageIndex(
      [
        { image: amd },
        { image: arm, annotations: { note: 'arm' } },
        { image: win, platform: { architecture: 'amd64', os: 'windows', 'os.version': '10.0' } },
      ],
      { annotations: { 'org.opencontainers.image.ref.name': 'v1' } },
    );
    expect(await again.digest()).toBe(await index.digest());
    await validateImage(index);
  });

  it('builds a Docker manifest list from Docker images and nests indexes', async () => {
    const a = emptyImage({ mediaTypeFamily: 'docker' });
    const b = emptyImage({
      mediaTypeFamily: 'docker',
      platform: { architecture: 'arm', os: 'linux', variant: 'v7' },
    });
    const list = imageIndex([{ image: a }, { image: b }]);
    expect(list.mediaType).toBe(MediaType.DockerManifestList);
    const outer = imageIndex([{ image: list }]);
    expect(outer.mediaType).toBe(MediaType.OciIndex);
    const m = await outer.indexManifest();
    expect(m.manifests[0]).toEqual({
      mediaType: MediaType.DockerManifestList,
      digest: await list.digest(),
      size: await list.size(),
    });
    expect(await outer.imageIndex(await list.digest())).toBe(list);
    const children = await outer.children();
    expect(children[0]?.kind).toBe('index');
    await validateImage(outer);
  });

  it('annotates an index and keeps its children', async () => {
    const amd = emptyImage();
    const index = imageIndex([{ image: amd }], { annotations: { a: '1' } });
    const annotated = withAnnotations(index, { b: '2', a: '3' });
    expect(annotated.mediaType).toBe(MediaType.OciIndex);
    const m = await annotated.indexManifest();
    expect(m.annotations).toEqual({ a: '3', b: '2' });
    expect(m.manifests).toEqual((await index.indexManifest()).manifests);
    expect(await annotated.image(await amd.digest())).toBe(amd);
    expect(await annotated.digest()).not.toBe(await index.digest());
    await validateImage(annotated);
    expect(() => withAnnotations(null as unknown as Image, {})).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });

  it("keeps an entry's artifactType in its descriptor", async () => {
    const sbom = emptyImage();
    const index = imageIndex([
      { image: sbom, artifactType: 'application/vnd.example.sbom', annotations: { k: 'v' } },
    ]);
    const [entry] = (await index.indexManifest()).manifests;
    expect(entry?.artifactType).toBe('application/vnd.example.sbom');
    expect(entry?.annotations).toEqual({ k: 'v' });
    await validateImage(index);
  });

  it('rejects an entry without an image with INVALID_ARGUMENT', () => {
    expect(() => imageIndex([{} as never])).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });
});

/** CountingLayer counts identity calls and can fail its first diffId() call. */
class CountingLayer implements Layer {
  readonly mediaType: string;
  readonly calls = { digest: 0, diffId: 0, size: 0 };
  failFirstDiffId: boolean;
  readonly #inner: Layer;
  constructor(bytes: string, failFirstDiffId = false) {
    this.#inner = layerFromBytes(Buffer.from(bytes));
    this.mediaType = this.#inner.mediaType;
    this.failFirstDiffId = failFirstDiffId;
  }
  digest() {
    this.calls.digest++;
    return this.#inner.digest();
  }
  diffId() {
    this.calls.diffId++;
    if (this.failFirstDiffId) {
      this.failFirstDiffId = false;
      return Promise.reject(Object.assign(new Error('transient'), { code: 'NETWORK' }));
    }
    return this.#inner.diffId();
  }
  size() {
    this.calls.size++;
    return this.#inner.size();
  }
  compressed() {
    return this.#inner.compressed();
  }
  uncompressed() {
    return this.#inner.uncompressed();
  }
}

describe('memoization', () => {
  it('computes each value once per image object', async () => {
    const layer = new CountingLayer('memo');
    const img = appendLayers(emptyImage(), layer);
    await Promise.all([img.digest(), img.digest(), img.manifest(), img.rawConfig(), img.size()]);
    await img.digest();
    expect(layer.calls).toEqual({ digest: 1, diffId: 1, size: 1 });
    expect(await img.rawManifest()).toEqual(await img.rawManifest());
  });

  it('recomputes after a failure, so a re-openable layer can be retried', async () => {
    const layer = new CountingLayer('retry', true);
    const img = appendLayers(emptyImage(), layer);
    await expect(img.configFile()).rejects.toThrow('transient');
    expect((await img.configFile()).rootfs.diff_ids).toEqual([await layer.diffId()]);
    await validateImage(img);
  });
});

type Op =
  | { op: 'append'; bytes: string; annotate: boolean }
  | { op: 'env'; key: string; value: string }
  | { op: 'label'; key: string; value: string }
  | { op: 'annotate'; key: string; value: string }
  | { op: 'created'; seconds: number }
  | { op: 'platform'; arch: 'amd64' | 'arm64' }
  | { op: 'family'; family: 'oci' | 'docker' };

const key = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.]{0,8}$/);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant('append' as const),
    bytes: fc.string({ maxLength: 30 }),
    annotate: fc.boolean(),
  }),
  fc.record({ op: fc.constant('env' as const), key, value: fc.string({ maxLength: 10 }) }),
  fc.record({ op: fc.constant('label' as const), key, value: fc.string({ maxLength: 10 }) }),
  fc.record({ op: fc.constant('annotate' as const), key, value: fc.string({ maxLength: 10 }) }),
  fc.record({ op: fc.constant('created' as const), seconds: fc.integer({ min: 0, max: 2 ** 31 }) }),
  fc.record({
    op: fc.constant('platform' as const),
    arch: fc.constantFrom('amd64' as const, 'arm64' as const),
  }),
  fc.record({
    op: fc.constant('family' as const),
    family: fc.constantFrom('oci' as const, 'docker' as const),
  }),
);

function build(family: 'oci' | 'docker', ops: readonly Op[]): Image {
  let img = emptyImage({ mediaTypeFamily: family });
  for (const o of ops) {
    switch (o.op) {
      case 'append': {
        const layer = layerFromBytes(Buffer.from(o.bytes));
        img = appendLayers(img, o.annotate ? { layer, annotations: { n: o.bytes } } : layer);
        break;
      }
      case 'env':
        img = withConfig(img, { env: { [o.key]: o.value } });
        break;
      case 'label':
        img = withConfig(img, { labels: { [o.key]: o.value } });
        break;
      case 'annotate':
        img = withAnnotations(img, { [o.key]: o.value });
        break;
      case 'created':
        img = withCreated(img, o.seconds * 1000);
        break;
      case 'platform':
        img = withPlatform(img, { architecture: o.arch, os: 'linux' });
        break;
      case 'family':
        img = withMediaTypeFamily(img, o.family);
        break;
    }
  }
  return img;
}

describe('mutation properties', () => {
  it('yields valid, deterministic images for any sequence of mutations', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('oci' as const, 'docker' as const),
        fc.array(opArb, { maxLength: 8 }),
        async (family, ops) => {
          const a = build(family, ops);
          const b = build(family, ops);
          expect(await a.digest()).toBe(await b.digest());
          await validateImage(a);
          const cfg = await a.configFile();
          const appended = ops.filter((o) => o.op === 'append').length;
          expect(cfg.rootfs.diff_ids).toHaveLength(appended);
          expect(cfg.history ?? []).toHaveLength(appended);
          const m = await a.manifest();
          const last = ops.filter((o) => o.op === 'family').at(-1);
          const fam = last?.op === 'family' ? last.family : family;
          expect(m.mediaType).toBe(
            fam === 'docker' ? MediaType.DockerManifest : MediaType.OciManifest,
          );
          for (const l of m.layers) {
            expect(l.mediaType).toBe(
              fam === 'docker' ? MediaType.DockerLayerGzip : MediaType.OciLayerGzip,
            );
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('hostile keys', () => {
  it('keeps a "__proto__" label and annotation as plain keys', async () => {
    const img = withAnnotations(
      withConfig(emptyImage(), {
        labels: JSON.parse('{"__proto__":"x","a":"b"}') as Record<string, string>,
        volumes: ['__proto__'],
      }),
      JSON.parse('{"__proto__":"y"}') as Record<string, string>,
    );
    expect(text(await img.rawConfig())).toContain('"Volumes":{"__proto__":{}}');
    expect(text(await img.rawConfig())).toContain('"Labels":{"__proto__":"x","a":"b"}');
    expect(text(await img.rawManifest())).toContain('"annotations":{"__proto__":"y"}');
    await validateImage(img);
  });
});
