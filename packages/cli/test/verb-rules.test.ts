import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { recordingProxy, type RecordingProxy } from '@lading/testing';
import { lading, ladingJson, tempDir } from './helpers.js';

// The rules of tag, ls, delete, --quiet, mutate on an index, writing by
// digest and indexes against docker archives, each against the embedded
// registry on 127.0.0.1 (behind a recording proxy where what was sent
// matters) and OCI layouts or archives in a temp dir.

let work: string;
let registry: Registry;
let host: string;
let proxy: RecordingProxy;
let app: string;
let appDigest: string;

const OciIndex = 'application/vnd.oci.image.index.v1+json';
const OciManifest = 'application/vnd.oci.image.manifest.v1+json';
const OciConfig = 'application/vnd.oci.image.config.v1+json';

type IndexJson = {
  manifests: { digest: string; annotations?: Record<string, string>; platform?: unknown }[];
  annotations?: Record<string, string>;
};

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** putBlob uploads `bytes` to `repo` the plain HTTP way (POST, then PUT ?digest=). */
async function putBlob(repo: string, bytes: Buffer): Promise<{ digest: string; size: number }> {
  const digest = sha256(bytes);
  const post = await fetch(`http://${host}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  const location = new URL(post.headers.get('location') ?? '', `http://${host}`);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, { method: 'PUT', body: bytes });
  expect(put.status).toBe(201);
  return { digest, size: bytes.length };
}

/** putManifest stores `value` under `ref` and describes it. */
async function putManifest(
  repo: string,
  ref: string,
  value: unknown,
  mediaType: string,
): Promise<{ mediaType: string; digest: string; size: number }> {
  const bytes = Buffer.from(JSON.stringify(value));
  const put = await fetch(`http://${host}/v2/${repo}/manifests/${ref}`, {
    method: 'PUT',
    headers: { 'content-type': mediaType },
    body: bytes,
  });
  expect(put.status).toBe(201);
  return { mediaType, digest: sha256(bytes), size: bytes.length };
}

/** indexWithAttestation stores an index of `app` and a buildx-style attestation of it. */
async function indexWithAttestation(ref: string): Promise<{ attestation: string }> {
  const config = await putBlob(
    'rules/app',
    Buffer.from(
      JSON.stringify({
        architecture: 'unknown',
        os: 'unknown',
        config: {},
        rootfs: { type: 'layers', diff_ids: [sha256(Buffer.from('{}'))] },
      }),
    ),
  );
  const layer = await putBlob('rules/app', Buffer.from('{}'));
  const attestation = await putManifest(
    'rules/app',
    'attestation',
    {
      schemaVersion: 2,
      mediaType: OciManifest,
      config: { ...config, mediaType: OciConfig },
      layers: [{ ...layer, mediaType: 'application/vnd.in-toto+json' }],
    },
    OciManifest,
  );
  const image = await ladingJson<{ mediaType: string; digest: string; size: number }>(
    'digest',
    app,
  );
  await putManifest(
    'rules/app',
    ref,
    {
      schemaVersion: 2,
      mediaType: OciIndex,
      manifests: [
        { ...image, platform: { architecture: 'amd64', os: 'linux' } },
        {
          ...attestation,
          platform: { architecture: 'unknown', os: 'unknown' },
          annotations: {
            'vnd.docker.reference.digest': appDigest,
            'vnd.docker.reference.type': 'attestation-manifest',
          },
        },
      ],
    },
    OciIndex,
  );
  return { attestation: attestation.digest };
}

async function indexJson(dir: string): Promise<IndexJson> {
  return JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as IndexJson;
}

beforeAll(async () => {
  registry = createRegistry({ storage: memoryStorage() });
  const url = (await registry.listen({ host: '127.0.0.1', port: 0 })).url;
  host = new URL(url).host;
  proxy = await recordingProxy(url);
  work = await mkdtemp(join(tmpdir(), 'lading-rules-'));
  const dir = join(work, 'app');
  await mkdir(dir);
  await writeFile(join(dir, 'a.txt'), 'rules');
  app = `${host}/rules/app:1`;
  appDigest = (await ladingJson<{ digest: string }>('build', dir, app)).digest;
});

afterAll(async () => {
  try {
    await proxy.close();
    await registry.close();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

describe('lading tag', () => {
  it('refuses a bare tag that is not a valid tag when it is 129 characters long', async () => {
    const r = await lading('tag', app, 'a'.repeat(129));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('not a valid tag');
    expect((await lading('tag', app, 'localhost:5000')).code).toBe(2);
    // 128 is the limit, and such a tag is written in the same repository.
    const longest = 'b'.repeat(128);
    expect((await lading('tag', app, longest)).code).toBe(0);
    expect((await lading('digest', `${host}/rules/app:${longest}`)).stdout.trim()).toBe(appDigest);
  });

  it('refuses every tag before writing any when one of them is invalid', async () => {
    expect((await lading('tag', app, 'first-ok', '.bad')).code).toBe(2);
    expect((await lading('digest', `${host}/rules/app:first-ok`)).code).toBe(4);
  });

  it('refuses a bare tag with exit 2 when SRC is a docker archive', async () => {
    const dir = await tempDir('lading-rules-archive-');
    const archive = `docker-archive:${join(dir, 'a.tar')}:rules/app:1`;
    expect((await lading('cp', app, archive)).code).toBe(0);
    const before = await readFile(join(dir, 'a.tar'));
    const r = await lading('tag', archive, 'v2');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('not tagged in place');
    expect((await readFile(join(dir, 'a.tar'))).equals(before)).toBe(true);
  });

  it('refuses a bare tag a layout cannot hold when SRC is an OCI layout', async () => {
    const dir = join(await tempDir('lading-rules-layout-'), 'l');
    expect((await lading('cp', app, `oci:${dir}:1`)).code).toBe(0);
    for (const bad of ['_x', 'a:b']) {
      const r = await lading('tag', `oci:${dir}:1`, bad);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('not a valid tag');
    }
    expect((await indexJson(dir)).manifests).toHaveLength(1);
    // What tag writes, the layout reads back.
    expect((await lading('tag', `oci:${dir}:1`, 'v1.0+b')).code).toBe(0);
    expect((await lading('digest', `oci:${dir}:v1.0+b`)).stdout.trim()).toBe(appDigest);
  });
});

describe('lading ls', () => {
  it('exits 4 when the OCI layout does not exist', async () => {
    const dir = await tempDir('lading-rules-ls-');
    const r = await lading('ls', `oci:${join(dir, 'nolayout')}`);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('no OCI layout');
    // An empty layout is there: no names, exit 0.
    await mkdir(join(dir, 'empty'));
    await writeFile(join(dir, 'empty', 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await writeFile(
      join(dir, 'empty', 'index.json'),
      JSON.stringify({ schemaVersion: 2, mediaType: OciIndex, manifests: [] }),
    );
    expect(await lading('ls', `oci:${join(dir, 'empty')}`)).toMatchObject({ code: 0, stdout: '' });
  });

  it('lists a docker:// repository like a plain reference', async () => {
    const r = await lading('ls', `docker://${host}/rules/app`);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')).toContain('1');
  });

  it('refuses a tag or digest with exit 2 in a registry reference as in a layout', async () => {
    expect((await lading('ls', `${host}/rules/app:1`)).code).toBe(2);
    expect((await lading('ls', `${host}/rules/app@${appDigest}`)).code).toBe(2);
    const dir = join(await tempDir('lading-rules-ls-tag-'), 'l');
    expect((await lading('cp', app, `oci:${dir}:1`)).code).toBe(0);
    expect((await lading('ls', `oci:${dir}:1`)).code).toBe(2);
    // A port is not a tag.
    expect((await lading('ls', `${host}/rules/app`)).code).toBe(0);
  });
});

describe('lading delete in a layout', () => {
  it('deletes the only image when the location names no tag', async () => {
    const dir = join(await tempDir('lading-rules-delete-'), 'l');
    expect((await lading('cp', app, `oci:${dir}:1`)).code).toBe(0);
    const r = await lading('delete', `oci:${dir}`);
    expect(r.code).toBe(0);
    expect((await indexJson(dir)).manifests).toEqual([]);
  });

  it('exits 2 naming the images when the layout holds several and no tag is given', async () => {
    const dir = join(await tempDir('lading-rules-delete-two-'), 'l');
    const other = await tempDir('lading-rules-other-');
    await writeFile(join(other, 'b.txt'), 'other');
    expect((await lading('cp', app, `oci:${dir}:first`)).code).toBe(0);
    expect((await lading('build', other, `oci:${dir}:second`)).code).toBe(0);
    const r = await lading('delete', `oci:${dir}`);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('first');
    expect(r.stderr).toContain('second');
    expect((await indexJson(dir)).manifests).toHaveLength(2);
  });

  it('exits 4 when no index entry points at the digest', async () => {
    const dir = join(await tempDir('lading-rules-delete-digest-'), 'l');
    expect((await lading('cp', app, `oci:${dir}:1`)).code).toBe(0);
    expect((await lading('delete', `oci:${dir}@${appDigest}`)).code).toBe(0);
    expect((await indexJson(dir)).manifests).toEqual([]);
    // The manifest blob is still stored, but nothing in the layout names it.
    const again = await lading('delete', `oci:${dir}@${appDigest}`);
    expect(again.code).toBe(4);
    expect(again.stdout).toBe('');
  });
});

describe('--quiet', () => {
  it('prints only the digest for tag and delete, and nothing for validate', async () => {
    const src = `${host}/rules/quiet:1`;
    expect((await lading('cp', app, src)).code).toBe(0);
    expect(await lading('tag', src, 'q1', '-q')).toMatchObject({
      code: 0,
      stdout: `${appDigest}\n`,
    });
    expect(await lading('delete', `${host}/rules/quiet:q1`, '-q')).toMatchObject({
      code: 0,
      stdout: `${appDigest}\n`,
    });
    expect(await lading('validate', app, '-q')).toMatchObject({ code: 0, stdout: '' });
  });
});

describe('lading mutate on an index', () => {
  it('leaves an attestation alone and points it at the edited image when --env is given', async () => {
    const { attestation } = await indexWithAttestation('withatt');
    const dst = `${host}/rules/app:withatt-env`;
    expect(
      (await lading('mutate', `${host}/rules/app:withatt`, '-t', dst, '--env', 'X=1')).code,
    ).toBe(0);
    const index = await ladingJson<IndexJson>('manifest', dst);
    const [image, att] = index.manifests;
    expect(image?.digest).not.toBe(appDigest);
    expect(att?.digest).toBe(attestation);
    expect(att?.annotations).toEqual({
      'vnd.docker.reference.digest': image?.digest,
      'vnd.docker.reference.type': 'attestation-manifest',
    });
    // No annotations were asked for: the index gets none (not even {}).
    expect(index).not.toHaveProperty('annotations');
    const config = await ladingJson<{ config: { Env?: string[] } }>(
      'config',
      dst,
      '--platform',
      'linux/amd64',
    );
    expect(config.config.Env).toContain('X=1');
  });

  it('puts --annotation on the index only', async () => {
    await indexWithAttestation('withatt-a');
    const dst = `${host}/rules/app:withatt-annotated`;
    expect(
      (await lading('mutate', `${host}/rules/app:withatt-a`, '-t', dst, '--annotation', 'k=v'))
        .code,
    ).toBe(0);
    const index = await ladingJson<IndexJson>('manifest', dst);
    expect(index.annotations).toEqual({ k: 'v' });
    // The images are as they were.
    expect(index.manifests[0]?.digest).toBe(appDigest);
    const image = await ladingJson<{ annotations?: unknown }>(
      'manifest',
      dst,
      '--platform',
      'linux/amd64',
    );
    expect(image.annotations).toBeUndefined();
  });
});

describe('writing by digest', () => {
  it('gives an untagged index.json entry to an image copied by digest into a layout', async () => {
    const dir = join(await tempDir('lading-rules-cp-digest-'), 'l');
    expect((await lading('cp', `${host}/rules/app@${appDigest}`, `oci:${dir}`)).code).toBe(0);
    const { manifests } = await indexJson(dir);
    expect(manifests.map((m) => m.digest)).toEqual([appDigest]);
    expect(manifests[0]?.annotations).toBeUndefined();
    expect((await lading('digest', `oci:${dir}`)).stdout.trim()).toBe(appDigest);
    // Again: still one entry.
    expect((await lading('cp', `${host}/rules/app@${appDigest}`, `oci:${dir}`)).code).toBe(0);
    expect((await indexJson(dir)).manifests).toHaveLength(1);
    // and delete takes it out again, untagged as it is
    const gone = await lading('delete', `oci:${dir}@${appDigest}`, '-q');
    expect(gone.stderr).toBe('');
    expect(gone.stdout.trim()).toBe(appDigest);
    expect((await indexJson(dir)).manifests).toEqual([]);
  });

  it('refuses mutate in place of a SRC given by digest before uploading anything', async () => {
    const at = `${proxy.host}/rules/app@${appDigest}`;
    proxy.clear();
    const r = await lading('mutate', at, '--env', 'B=1');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('names a digest');
    expect(proxy.requests.filter((q) => q.method !== 'GET' && q.method !== 'HEAD')).toEqual([]);
    const dir = join(await tempDir('lading-rules-mutate-digest-'), 'l');
    expect((await lading('cp', app, `oci:${dir}:1`)).code).toBe(0);
    const before = await readFile(join(dir, 'index.json'));
    expect((await lading('mutate', `oci:${dir}@${appDigest}`, '--env', 'B=1')).code).toBe(2);
    expect((await readFile(join(dir, 'index.json'))).equals(before)).toBe(true);
    // With a destination it is an ordinary edit.
    expect((await lading('mutate', at, '-t', `oci:${dir}:edited`, '--env', 'B=1')).code).toBe(0);
  });
});

describe('indexes and docker archives', () => {
  it('refuses index create and mutate of an index into a docker archive before fetching a blob', async () => {
    await indexWithAttestation('withatt-g');
    const dir = await tempDir('lading-rules-ix-');
    const file = join(dir, 'ix.tar');
    proxy.clear();
    const created = await lading(
      'index',
      'create',
      `docker-archive:${file}:a/b:1`,
      `${proxy.host}/rules/app:1`,
    );
    expect(created.code).toBe(2);
    expect(created.stderr).toContain('single-platform');
    expect(proxy.requests).toEqual([]);
    const mutated = await lading(
      'mutate',
      `${proxy.host}/rules/app:withatt-g`,
      '-t',
      `docker-archive:${file}:a/b:1`,
      '--env',
      'A=1',
    );
    expect(mutated.code).toBe(2);
    expect(mutated.stderr).toContain('single-platform');
    expect(proxy.requests.filter((q) => q.path.includes('/blobs/'))).toEqual([]);
    await expect(stat(file)).rejects.toThrow();
  });
});
