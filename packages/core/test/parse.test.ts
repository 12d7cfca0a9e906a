import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import {
  MAX_MANIFEST_SIZE,
  MediaType,
  isLadingError,
  parseConfigFile,
  parseImageManifest,
  parseIndexManifest,
  parseManifest,
  readCapped,
  encodeManifest,
} from '../src/index.js';

const h = (c: string) => `sha256:${c.repeat(64)}`;
const enc = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

const image = () => ({
  schemaVersion: 2,
  mediaType: MediaType.OciManifest,
  config: { mediaType: MediaType.OciConfig, digest: h('a'), size: 10 },
  layers: [
    { mediaType: MediaType.OciLayerGzip, digest: h('b'), size: 20 },
    { mediaType: MediaType.OciLayerGzip, digest: h('c'), size: 0, annotations: { k: 'v' } },
  ],
});
const index = () => ({
  schemaVersion: 2,
  mediaType: MediaType.OciIndex,
  manifests: [
    {
      mediaType: MediaType.OciManifest,
      digest: h('d'),
      size: 500,
      platform: { architecture: 'amd64', os: 'linux' },
    },
  ],
});
const config = () => ({
  architecture: 'amd64',
  os: 'linux',
  config: { Env: ['A=1'], Labels: null, Cmd: ['sh'] },
  rootfs: { type: 'layers', diff_ids: [h('e')] },
  history: [{ created_by: 'x', empty_layer: false }],
});

function codeOf(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    expect(isLadingError(err)).toBe(true);
    return err as { code: string; message: string };
  }
  throw new Error('expected a throw');
}

type Bad = [string, () => unknown, string, string];
const mutateImage = (f: (m: ReturnType<typeof image> & Record<string, unknown>) => void) => {
  const m = image() as ReturnType<typeof image> & Record<string, unknown>;
  f(m);
  return enc(m);
};
const mutateConfig = (f: (c: Record<string, unknown> & ReturnType<typeof config>) => void) => {
  const c = config() as ReturnType<typeof config> & Record<string, unknown>;
  f(c);
  return enc(c);
};

const badImages: Bad[] = [
  ['not JSON', () => parseImageManifest(enc('{')), 'INVALID_MANIFEST', 'not JSON'],
  [
    'not UTF-8',
    () => parseImageManifest(Buffer.from([0x7b, 0xff, 0x7d])),
    'INVALID_MANIFEST',
    'UTF-8',
  ],
  ['an array', () => parseImageManifest(enc([])), 'INVALID_MANIFEST', '$ must be an object'],
  ['null', () => parseImageManifest(enc('null')), 'INVALID_MANIFEST', '$ must be an object'],
  [
    'schema 1',
    () => parseImageManifest(mutateImage((m) => (m.schemaVersion = 1))),
    'UNSUPPORTED_MEDIA_TYPE',
    'schema 1',
  ],
  [
    'schema 3',
    () => parseImageManifest(mutateImage((m) => (m.schemaVersion = 3))),
    'INVALID_MANIFEST',
    '$.schemaVersion',
  ],
  [
    'schema "2"',
    () => parseImageManifest(mutateImage((m) => (m.schemaVersion = '2' as never))),
    'INVALID_MANIFEST',
    '$.schemaVersion',
  ],
  [
    'no config',
    () => parseImageManifest(mutateImage((m) => delete (m as Partial<typeof m>).config)),
    'INVALID_MANIFEST',
    '$.config is missing',
  ],
  [
    'no layers',
    () => parseImageManifest(mutateImage((m) => delete (m as Partial<typeof m>).layers)),
    'INVALID_MANIFEST',
    '$.layers is missing',
  ],
  [
    'layers object',
    () => parseImageManifest(mutateImage((m) => (m.layers = {} as never))),
    'INVALID_MANIFEST',
    '$.layers must be an array',
  ],
  [
    'bad layer digest',
    () => parseImageManifest(mutateImage((m) => (m.layers[1]!.digest = 'sha256:zz'))),
    'INVALID_MANIFEST',
    '$.layers[1].digest',
  ],
  [
    'uppercase digest',
    () => parseImageManifest(mutateImage((m) => (m.config.digest = h('A')))),
    'INVALID_MANIFEST',
    '$.config.digest',
  ],
  [
    'negative size',
    () => parseImageManifest(mutateImage((m) => (m.layers[0]!.size = -1))),
    'INVALID_MANIFEST',
    '$.layers[0].size',
  ],
  [
    'fractional size',
    () => parseImageManifest(mutateImage((m) => (m.layers[0]!.size = 1.5))),
    'INVALID_MANIFEST',
    '$.layers[0].size',
  ],
  [
    'unsafe size',
    () => parseImageManifest(mutateImage((m) => (m.layers[0]!.size = 2 ** 53))),
    'INVALID_MANIFEST',
    '$.layers[0].size',
  ],
  [
    'string size',
    () => parseImageManifest(mutateImage((m) => (m.config.size = '10' as never))),
    'INVALID_MANIFEST',
    '$.config.size',
  ],
  [
    'no mediaType on layer',
    () =>
      parseImageManifest(
        mutateImage((m) => delete (m.layers[0] as Partial<(typeof m.layers)[0]>).mediaType),
      ),
    'INVALID_MANIFEST',
    '$.layers[0].mediaType',
  ],
  [
    'empty mediaType',
    () => parseImageManifest(mutateImage((m) => (m.config.mediaType = '' as never))),
    'INVALID_MANIFEST',
    '$.config.mediaType must not be empty',
  ],
  [
    'annotation number',
    () => parseImageManifest(mutateImage((m) => (m.annotations = { a: 1 }))),
    'INVALID_MANIFEST',
    '$.annotations["a"]',
  ],
  [
    'urls not strings',
    () =>
      parseImageManifest(mutateImage((m) => ((m.layers[0] as Record<string, unknown>).urls = [1]))),
    'INVALID_MANIFEST',
    '$.layers[0].urls[0]',
  ],
  [
    'bad subject',
    () => parseImageManifest(mutateImage((m) => (m.subject = { mediaType: 'x' }))),
    'INVALID_MANIFEST',
    '$.subject.digest',
  ],
  ['index body', () => parseImageManifest(enc(index())), 'INVALID_MANIFEST', '$.mediaType'],
  [
    'manifests in image',
    () =>
      parseImageManifest(
        mutateImage((m) => {
          delete (m as Partial<typeof m>).mediaType;
          m.manifests = [];
        }),
      ),
    'INVALID_MANIFEST',
    '$.manifests',
  ],
  [
    'body vs expected',
    () => parseImageManifest(enc(image()), MediaType.DockerManifest),
    'INVALID_MANIFEST',
    'served as',
  ],
  [
    'expected is an index type',
    () => parseImageManifest(enc(image()), MediaType.OciIndex),
    'UNSUPPORTED_MEDIA_TYPE',
    'unsupported media type',
  ],
  [
    'too large',
    () => parseImageManifest(Buffer.alloc(MAX_MANIFEST_SIZE + 1, 32)),
    'MANIFEST_TOO_LARGE',
    'exceeds',
  ],
];

const badIndexes: Bad[] = [
  [
    'no manifests',
    () => parseIndexManifest(enc({ schemaVersion: 2 })),
    'INVALID_MANIFEST',
    '$.manifests is missing',
  ],
  [
    'bad platform',
    () =>
      parseIndexManifest(
        enc({ ...index(), manifests: [{ ...index().manifests[0], platform: { os: 'linux' } }] }),
      ),
    'INVALID_MANIFEST',
    '$.manifests[0].platform.architecture',
  ],
  ['image body', () => parseIndexManifest(enc(image())), 'INVALID_MANIFEST', '$.mediaType'],
  [
    'config in index',
    () => parseIndexManifest(enc({ ...index(), mediaType: undefined, config: image().config })),
    'INVALID_MANIFEST',
    '$.config',
  ],
  [
    'docker list vs oci',
    () => parseIndexManifest(enc(index()), MediaType.DockerManifestList),
    'INVALID_MANIFEST',
    'served as',
  ],
  [
    'expected image type',
    () => parseIndexManifest(enc(index()), MediaType.OciManifest),
    'UNSUPPORTED_MEDIA_TYPE',
    'unsupported',
  ],
];

const badManifests: Bad[] = [
  [
    'schema1 content type',
    () => parseManifest(enc(image()), 'application/vnd.docker.distribution.manifest.v1+prettyjws'),
    'UNSUPPORTED_MEDIA_TYPE',
    'v1+prettyjws',
  ],
  [
    'unknown body type',
    () => parseManifest(enc({ ...image(), mediaType: 'application/x-foo' })),
    'UNSUPPORTED_MEDIA_TYPE',
    'application/x-foo',
  ],
  [
    'header vs body',
    () => parseManifest(enc(image()), MediaType.DockerManifest),
    'INVALID_MANIFEST',
    'served as',
  ],
  [
    'header index vs image body',
    () => parseManifest(enc(image()), MediaType.OciIndex),
    'INVALID_MANIFEST',
    '$.mediaType',
  ],
  [
    'schema 1 body',
    () => parseManifest(enc({ schemaVersion: 1, name: 'x' }), 'application/json'),
    'UNSUPPORTED_MEDIA_TYPE',
    'schema 1',
  ],
];

const badConfigs: Bad[] = [
  [
    'no architecture',
    () => parseConfigFile(mutateConfig((c) => delete (c as Partial<typeof c>).architecture)),
    'INVALID_CONFIG',
    '$.architecture',
  ],
  [
    'empty os',
    () => parseConfigFile(mutateConfig((c) => (c.os = ''))),
    'INVALID_CONFIG',
    '$.os must not be empty',
  ],
  [
    'no rootfs',
    () => parseConfigFile(mutateConfig((c) => delete (c as Partial<typeof c>).rootfs)),
    'INVALID_CONFIG',
    '$.rootfs is missing',
  ],
  [
    'rootfs type',
    () => parseConfigFile(mutateConfig((c) => (c.rootfs.type = 'layer'))),
    'INVALID_CONFIG',
    '$.rootfs.type',
  ],
  [
    'diff_ids missing',
    () => parseConfigFile(mutateConfig((c) => (c.rootfs = { type: 'layers' } as never))),
    'INVALID_CONFIG',
    '$.rootfs.diff_ids',
  ],
  [
    'bad diff_id',
    () => parseConfigFile(mutateConfig((c) => (c.rootfs.diff_ids = [h('e'), 'sha256:1']))),
    'INVALID_CONFIG',
    '$.rootfs.diff_ids[1]',
  ],
  [
    'env not array',
    () => parseConfigFile(mutateConfig((c) => (c.config.Env = 'A=1' as never))),
    'INVALID_CONFIG',
    '$.config.Env',
  ],
  [
    'env number',
    () => parseConfigFile(mutateConfig((c) => (c.config.Env = [1] as never))),
    'INVALID_CONFIG',
    '$.config.Env[0]',
  ],
  [
    'label number',
    () => parseConfigFile(mutateConfig((c) => (c.config.Labels = { a: 1 } as never))),
    'INVALID_CONFIG',
    '$.config.Labels["a"]',
  ],
  [
    'history not array',
    () => parseConfigFile(mutateConfig((c) => (c.history = {} as never))),
    'INVALID_CONFIG',
    '$.history',
  ],
  [
    'empty_layer string',
    () => parseConfigFile(mutateConfig((c) => (c.history = [{ empty_layer: 'yes' } as never]))),
    'INVALID_CONFIG',
    '$.history[0].empty_layer',
  ],
  [
    'created number',
    () => parseConfigFile(mutateConfig((c) => (c.created = 5))),
    'INVALID_CONFIG',
    '$["created"]',
  ],
  [
    'too large',
    () => parseConfigFile(Buffer.alloc(MAX_MANIFEST_SIZE + 1, 32)),
    'MANIFEST_TOO_LARGE',
    'config of',
  ],
  ['not JSON', () => parseConfigFile(enc('nope')), 'INVALID_CONFIG', 'not JSON'],
];

describe('parseImageManifest', () => {
  it('returns the manifest when it is valid', () => {
    expect(parseImageManifest(enc(image()))).toEqual(image());
    expect(parseImageManifest(enc(image()), `${MediaType.OciManifest}; charset=utf-8`)).toEqual(
      image(),
    );
    const docker = { ...image(), mediaType: MediaType.DockerManifest };
    expect(parseImageManifest(enc(docker), MediaType.DockerManifest).mediaType).toBe(
      MediaType.DockerManifest,
    );
    const noType = image() as Partial<ReturnType<typeof image>>;
    delete noType.mediaType;
    expect(parseImageManifest(enc(noType), MediaType.OciManifest).layers).toHaveLength(2);
    expect(parseImageManifest(enc({ ...image(), layers: [] })).layers).toEqual([]);
  });

  it('accepts exactly MAX_MANIFEST_SIZE bytes when padded with whitespace', () => {
    const body = enc(image());
    const padded = Buffer.concat([body, Buffer.alloc(MAX_MANIFEST_SIZE - body.length, 32)]);
    expect(parseImageManifest(padded).layers).toHaveLength(2);
  });

  it.each(badImages)('rejects %s', (_name, fn, code, path) => {
    const err = codeOf(fn);
    expect(err.code).toBe(code);
    expect(err.message).toContain(path);
  });
});

describe('parseIndexManifest', () => {
  it('returns the index when it is valid', () => {
    expect(parseIndexManifest(enc(index()), MediaType.OciIndex)).toEqual(index());
  });
  it.each(badIndexes)('rejects %s', (_name, fn, code, path) => {
    const err = codeOf(fn);
    expect(err.code).toBe(code);
    expect(err.message).toContain(path);
  });
});

describe('parseManifest', () => {
  it('tells images from indexes by Content-Type, body mediaType or shape', () => {
    expect(parseManifest(enc(image()), MediaType.OciManifest).kind).toBe('image');
    expect(parseManifest(enc(index()), MediaType.OciIndex).kind).toBe('index');
    expect(parseManifest(enc(index()))).toMatchObject({
      kind: 'index',
      mediaType: MediaType.OciIndex,
    });
    const dockerList = { ...index(), mediaType: MediaType.DockerManifestList };
    expect(parseManifest(enc(dockerList), 'application/json')).toMatchObject({
      kind: 'index',
      mediaType: MediaType.DockerManifestList,
    });
    const bare = { schemaVersion: 2, manifests: [] };
    expect(parseManifest(enc(bare))).toMatchObject({
      kind: 'index',
      mediaType: MediaType.OciIndex,
    });
    const bareImage = { schemaVersion: 2, config: image().config, layers: [] };
    expect(parseManifest(enc(bareImage))).toMatchObject({
      kind: 'image',
      mediaType: MediaType.OciManifest,
    });
  });
  it.each(badManifests)('rejects %s', (_name, fn, code, path) => {
    const err = codeOf(fn);
    expect(err.code).toBe(code);
    expect(err.message).toContain(path);
  });
});

describe('parseConfigFile', () => {
  it('returns the config, accepting Docker nulls and unknown fields', () => {
    const c = {
      ...config(),
      container: 'abc',
      docker_version: '24',
      config: { Env: null, Cmd: null, Entrypoint: null, Volumes: null, OnBuild: null },
    };
    expect(parseConfigFile(enc(c))).toEqual(c);
    expect(parseConfigFile(enc(config())).rootfs.diff_ids).toEqual([h('e')]);
    const nil = { ...config(), rootfs: { type: 'layers', diff_ids: null } };
    expect(parseConfigFile(enc(nil)).rootfs.diff_ids).toEqual([]);
  });
  it.each(badConfigs)('rejects %s', (_name, fn, code, path) => {
    const err = codeOf(fn);
    expect(err.code).toBe(code);
    expect(err.message).toContain(path);
  });
});

describe('parse fuzzing', () => {
  const parsers = [
    (b: Uint8Array) => parseImageManifest(b),
    (b: Uint8Array) => parseIndexManifest(b),
    (b: Uint8Array) => parseManifest(b),
    (b: Uint8Array) => parseConfigFile(b),
    (b: Uint8Array) => parseManifest(b, 'application/json'),
  ];
  const check = (bytes: Uint8Array) => {
    for (const parse of parsers) {
      try {
        parse(bytes);
      } catch (err) {
        expect(isLadingError(err)).toBe(true);
      }
    }
  };

  it('throws nothing but lading errors on random JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
        check(enc(JSON.stringify(v)));
      }),
      { numRuns: 500 },
    );
  });

  it('throws nothing but lading errors on mutated valid documents', () => {
    const doc = fc.constantFrom(image(), index(), config());
    const path = fc.array(fc.string({ maxLength: 12 }), { minLength: 1, maxLength: 3 });
    fc.assert(
      fc.property(doc, path, fc.jsonValue({ maxDepth: 2 }), (d, p, v) => {
        const copy = structuredClone(d) as Record<string, unknown>;
        let at: Record<string, unknown> = copy;
        for (const k of p.slice(0, -1)) {
          const next = at[k];
          if (typeof next !== 'object' || next === null) break;
          at = next as Record<string, unknown>;
        }
        at[p.at(-1)!] = v;
        check(enc(copy));
      }),
      { numRuns: 500 },
    );
  });

  it('throws nothing but lading errors on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        check(b);
      }),
      { numRuns: 300 },
    );
  });
});

describe('readCapped', () => {
  it('returns every byte when the stream fits under the cap', async () => {
    const buf = await readCapped(Readable.from([Buffer.from('ab'), Buffer.from('cd')]), 4);
    expect(buf.toString()).toBe('abcd');
  });

  it('throws MANIFEST_TOO_LARGE and destroys the stream when the cap is exceeded', async () => {
    const stream = Readable.from([Buffer.alloc(3), Buffer.alloc(3), Buffer.alloc(3)]);
    await expect(readCapped(stream, 5)).rejects.toMatchObject({ code: 'MANIFEST_TOO_LARGE' });
    expect(stream.destroyed).toBe(true);
  });

  it('reads async iterables of Uint8Array', async () => {
    async function* gen() {
      await Promise.resolve();
      yield new Uint8Array([1, 2]);
      yield new Uint8Array([3]);
    }
    expect([...(await readCapped(gen(), 3))]).toEqual([1, 2, 3]);
  });

  it('throws ABORTED when the signal fires mid-read', async () => {
    const ac = new AbortController();
    const stream = new Readable({ read: () => undefined });
    stream.push(Buffer.from('x'));
    const p = readCapped(stream, 100, ac.signal);
    setImmediate(() => {
      ac.abort();
    });
    await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
    expect(stream.destroyed).toBe(true);
  });

  it('throws ABORTED without reading when the signal has already fired', async () => {
    const stream = Readable.from([Buffer.from('x')]);
    await expect(readCapped(stream, 100, AbortSignal.abort())).rejects.toMatchObject({
      code: 'ABORTED',
    });
  });

  it('passes the stream error through', async () => {
    const stream = new Readable({
      read() {
        this.destroy(new Error('boom'));
      },
    });
    await expect(readCapped(stream, 100)).rejects.toThrow('boom');
  });
});

describe('parse and encode agree', () => {
  const digest = fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}` as const);
  const annotations = fc.option(
    fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 })),
    {
      nil: undefined,
    },
  );
  const descriptor = fc
    .record({
      mediaType: fc.constantFrom(
        MediaType.OciLayerGzip,
        MediaType.DockerLayerGzip,
        'application/x-custom',
      ),
      digest,
      size: fc.nat(),
      annotations,
    })
    .map((d) => {
      if (d.annotations === undefined) delete (d as Partial<typeof d>).annotations;
      return d;
    });

  it('parses back what encodeManifest writes, for any valid image manifest', () => {
    fc.assert(
      fc.property(
        descriptor,
        fc.array(descriptor, { maxLength: 5 }),
        annotations,
        (config, layers, ann) => {
          const m = {
            schemaVersion: 2 as const,
            mediaType: MediaType.OciManifest,
            config,
            layers,
            ...(ann === undefined ? {} : { annotations: ann }),
          };
          const bytes = encodeManifest(m);
          expect(parseImageManifest(bytes, MediaType.OciManifest)).toEqual(m);
          expect(parseManifest(bytes).kind).toBe('image');
          expect(encodeManifest(parseImageManifest(bytes))).toEqual(bytes);
        },
      ),
      { numRuns: 200 },
    );
  });
});
