import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDistributionRegistry, type DistributionRegistry } from '@lading/testing';
import {
  appendLayers,
  digestOf,
  emptyImage,
  imageIndex,
  layerFromBytes,
  parseConfigFile,
  parseManifest,
  withConfig,
  withPlatform,
  type Image,
  type ImageIndex,
} from '../src/index.js';

// The real CNCF distribution registry (Debian docker-registry 2.8) checks
// that a manifest's config and layers, or an index's children, exist before
// it accepts a PUT. Pushing what the lazy model produces proves the bytes
// are manifests a real registry takes, digest for digest.

let registry: DistributionRegistry | undefined;
let base = '';

beforeAll(async () => {
  registry = await startDistributionRegistry();
  base = registry.url;
});

afterAll(async () => {
  await registry?.stop();
});

async function uploadBlob(repo: string, digest: string, bytes: Uint8Array): Promise<void> {
  const post = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  await post.arrayBuffer();
  expect(post.status).toBe(202);
  const location = new URL(post.headers.get('location') ?? '', base);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, {
    method: 'PUT',
    body: bytes,
    headers: { 'content-type': 'application/octet-stream' },
  });
  await put.arrayBuffer();
  expect(put.status).toBe(201);
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

async function putManifest(
  repo: string,
  ref: string,
  bytes: Uint8Array,
  mediaType: string,
): Promise<Response> {
  return fetch(`${base}/v2/${repo}/manifests/${ref}`, {
    method: 'PUT',
    body: bytes,
    headers: { 'content-type': mediaType },
  });
}

async function pushImage(repo: string, image: Image, tag: string): Promise<void> {
  for (const layer of await image.layers()) {
    await uploadBlob(repo, await layer.digest(), await readAll(layer.compressed()));
  }
  await uploadBlob(repo, (await image.configDescriptor()).digest, await image.rawConfig());
  const res = await putManifest(repo, tag, await image.rawManifest(), image.mediaType);
  const body = await res.text();
  expect(res.status, body).toBe(201);
  expect(res.headers.get('docker-content-digest')).toBe(await image.digest());
}

async function pushIndex(repo: string, index: ImageIndex, tag: string): Promise<void> {
  for (const c of await index.children()) {
    if (c.kind === 'image') await pushImage(repo, c.image, c.descriptor.digest);
  }
  const res = await putManifest(repo, tag, await index.rawManifest(), index.mediaType);
  const body = await res.text();
  expect(res.status, body).toBe(201);
  expect(res.headers.get('docker-content-digest')).toBe(await index.digest());
}

async function getManifest(repo: string, ref: string, accept: string) {
  const res = await fetch(`${base}/v2/${repo}/manifests/${ref}`, { headers: { accept } });
  const bytes = Buffer.from(await res.arrayBuffer());
  expect(res.status).toBe(200);
  return { bytes, contentType: res.headers.get('content-type') ?? undefined };
}

function build(family: 'oci' | 'docker', arch: string): Image {
  const img = appendLayers(
    emptyImage({ mediaTypeFamily: family }),
    layerFromBytes(Buffer.from(`base layer ${arch}`)),
    {
      layer: layerFromBytes(Buffer.from(`app layer ${arch}`)),
      history: { created_by: 'COPY app /app' },
    },
  );
  return withPlatform(
    withConfig(img, { entrypoint: ['/app'], env: { A: '1' }, exposedPorts: ['8080'] }),
    { architecture: arch, os: 'linux' },
  );
}

describe('lazy images against the CNCF distribution registry', () => {
  it.each(['oci', 'docker'] as const)(
    'accepts a %s image and serves back the same bytes',
    async (family) => {
      const image = build(family, 'amd64');
      await pushImage(`core/${family}`, image, 'v1');
      const got = await getManifest(`core/${family}`, 'v1', image.mediaType);
      expect(got.bytes).toEqual(Buffer.from(await image.rawManifest()));
      expect(got.contentType).toBe(image.mediaType);
      expect(digestOf(got.bytes)).toBe(await image.digest());
      const parsed = parseManifest(got.bytes, got.contentType);
      expect(parsed.kind).toBe('image');
      const cfgRes = await fetch(
        `${base}/v2/core/${family}/blobs/${(await image.configDescriptor()).digest}`,
      );
      expect(parseConfigFile(Buffer.from(await cfgRes.arrayBuffer()))).toEqual(
        await image.configFile(),
      );
    },
  );

  it.each(['oci', 'docker'] as const)(
    'accepts a %s multi-platform index whose children were pushed first',
    async (family) => {
      const index = imageIndex([
        { image: build(family, 'amd64') },
        { image: build(family, 'arm64') },
      ]);
      await pushIndex(`core/${family}-multi`, index, 'multi');
      const got = await getManifest(`core/${family}-multi`, 'multi', index.mediaType);
      expect(digestOf(got.bytes)).toBe(await index.digest());
      const parsed = parseManifest(got.bytes, got.contentType);
      expect(parsed.kind).toBe('index');
      if (parsed.kind === 'index') {
        expect(parsed.manifest.manifests.map((d) => d.platform?.architecture)).toEqual([
          'amd64',
          'arm64',
        ]);
      }
    },
  );

  it('rejects a manifest whose layers were never uploaded, so acceptance above means something', async () => {
    const image = build('oci', 'amd64');
    await uploadBlob(
      'core/missing',
      (await image.configDescriptor()).digest,
      await image.rawConfig(),
    );
    const res = await putManifest('core/missing', 'v1', await image.rawManifest(), image.mediaType);
    const body = await res.text();
    expect(res.status).toBe(400);
    expect(body).toContain('MANIFEST_BLOB_UNKNOWN');
  });
});
