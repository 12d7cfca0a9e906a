import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MediaType,
  appendLayers,
  copy,
  digestOf,
  emptyImage,
  imageIndex,
  isImageIndex,
  layerFromBytes,
  memoryTarget,
  withConfig,
  type Image,
  type ImageIndex,
} from '@lading/core';
import { streamLayer } from '@lading/layers';
import {
  recordingProxy,
  singleFileTar,
  startDistributionRegistry,
  type DistributionRegistry,
} from '@lading/testing';
import { RegistryClient, pull, registryTarget, write, writeIndex } from '../src/index.js';
import { CountingSource, asTar } from './helpers.js';

const empty = Buffer.from('{}');

/** sigArtifact is an artifact manifest of `subject`: the empty config and one empty layer. */
function sigArtifact(
  subject: { mediaType: string; digest: string; size: number },
  annotations?: Record<string, string>,
): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      artifactType: 'application/vnd.example.sig',
      config: { mediaType: MediaType.OciEmpty, digest: digestOf(empty), size: 2 },
      layers: [{ mediaType: MediaType.OciEmpty, digest: digestOf(empty), size: 2 }],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
      ...(annotations === undefined ? {} : { annotations }),
    }),
  );
}

describe('core images, real stream layers and indexes against the CNCF registry', () => {
  let reg: DistributionRegistry;
  beforeAll(async () => {
    reg = await startDistributionRegistry();
  });
  afterAll(async () => {
    await reg.stop();
  });

  it('pushes an appendLayers image over streamLayer with zero bytes read before authorized, and pulls it back', async () => {
    const source = new CountingSource(16, 32 * 1024, 5);
    const layer = streamLayer(asTar(source, 16 * 32 * 1024));
    const image = withConfig(appendLayers(emptyImage(), layer), {
      env: ['A=1'],
      cmd: ['/bin/app'],
    });
    const push = write(`${reg.host}/core/app:1`, image);
    await push.authorized;
    const result = await push.done;
    expect(result.digest).toBe(await image.digest());
    expect(source.bytesRead).toBe(16 * 32 * 1024);
    const pulled = (await pull(`${reg.host}/core/app:1`)) as Image;
    expect((await pulled.configFile()).config?.Cmd).toEqual(['/bin/app']);
    const [l] = await pulled.layers();
    expect(digestOf(await buffer(l!.compressed()))).toBe(await layer.digest());
    expect(await l!.diffId()).toBe(await layer.diffId());
  });

  it('appends to a pulled base with core appendLayers and writes back without downloading base layers', async () => {
    const base = appendLayers(
      emptyImage(),
      layerFromBytes(Buffer.from('base-1')),
      layerFromBytes(Buffer.from('base-2')),
    );
    await write(`${reg.host}/core/base:1`, base).done;
    const proxy = await recordingProxy(reg.url);
    try {
      const pulled = (await pull(`${proxy.host}/core/base:1`)) as Image;
      const top = (): Image =>
        appendLayers(
          pulled,
          streamLayer(Readable.from([singleFileTar('top', Buffer.from('top layer'))])),
        );
      const same = await write(`${proxy.host}/core/base:2`, top()).done;
      const other = await write(`${proxy.host}/core/derived:1`, top()).done;
      expect(same.digest).toBe(other.digest);
      const baseDigests = await Promise.all((await base.layers()).map((l) => l.digest()));
      const layerGets = proxy.requests.filter(
        (r) => r.method === 'GET' && baseDigests.some((d) => r.path.endsWith(`/blobs/${d}`)),
      );
      expect(layerGets).toEqual([]);
      const mounts = proxy.requests.filter((r) => r.method === 'POST' && r.path.includes('mount='));
      expect(mounts.length).toBe(2);
      expect(mounts.every((m) => m.status === 201)).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('writes a multi-platform index children first and pulls one platform', async () => {
    const amd = appendLayers(
      emptyImage({ platform: { os: 'linux', architecture: 'amd64' } }),
      layerFromBytes(Buffer.from('amd64')),
    );
    const arm = appendLayers(
      emptyImage({ platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }),
      layerFromBytes(Buffer.from('arm64')),
    );
    const index = imageIndex([
      { image: amd, platform: { os: 'linux', architecture: 'amd64' } },
      { image: arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    ]);
    const result = await writeIndex(`${reg.host}/multi/app:1`, index).done;
    expect(result.digest).toBe(await index.digest());
    const whole = await pull(`${reg.host}/multi/app:1`);
    expect(isImageIndex(whole)).toBe(true);
    expect((await (whole as ImageIndex).indexManifest()).manifests.length).toBe(2);
    const raw = await (whole as ImageIndex).rawManifest();
    expect(digestOf(Buffer.from(raw))).toBe(result.digest);
    expect(await (whole as ImageIndex).size()).toBe(raw.length);
    const children = await (whole as ImageIndex).children();
    expect(children.map((c) => c.kind)).toEqual(['image', 'image']);
    const kids = children.map((c) => (c.kind === 'image' ? c.image : undefined));
    expect(await kids[1]?.digest()).toBe(await arm.digest());
    const armDigest = await arm.digest();
    const armPulled = await (whole as ImageIndex).image(armDigest);
    expect(
      Buffer.from(await armPulled.rawManifest()).equals(Buffer.from(await arm.rawManifest())),
    ).toBe(true);
    const notIndex = await (whole as ImageIndex).imageIndex(armDigest).catch((e: unknown) => e);
    expect((notIndex as { code?: string }).code).toBe('UNSUPPORTED_MEDIA_TYPE');
    const one = (await pull(`${reg.host}/multi/app:1`, { platform: 'linux/arm64' })) as Image;
    expect(await one.digest()).toBe(await arm.digest());
    const missing = await pull(`${reg.host}/multi/app:1`, { platform: 'windows/amd64' }).catch(
      (e: unknown) => e,
    );
    expect((missing as { code?: string }).code).toBe('NOT_FOUND');
  });

  it('falls back to the sha256-<hex> tag schema when /referrers answers 404', async () => {
    const client = new RegistryClient(reg.host);
    const subject = appendLayers(emptyImage(), layerFromBytes(Buffer.from('subject')));
    const pushed = await write(`${reg.host}/refs/app:1`, subject).done;
    const s = await client.openUpload('refs/app');
    await s.upload(Readable.from([empty]));
    const artifact = sigArtifact(pushed);
    await client.putManifest('refs/app', digestOf(artifact), artifact, MediaType.OciManifest);
    const referrer = {
      mediaType: MediaType.OciManifest,
      digest: digestOf(artifact),
      size: artifact.length,
      artifactType: 'application/vnd.example.sig',
    };
    const fallback = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [referrer] }),
    );
    const tag = `sha256-${pushed.digest.slice('sha256:'.length)}`;
    await client.putManifest('refs/app', tag, fallback, MediaType.OciIndex);
    expect(await client.referrers('refs/app', pushed.digest)).toEqual([referrer]);
    expect(await client.referrers('refs/app', pushed.digest, { artifactType: 'other' })).toEqual(
      [],
    );
    expect(await client.referrers('refs/app', digestOf('none'))).toEqual([]);
  });

  it('indexes a pushed manifest with a subject under the tag schema, once, where the registry has no referrers API', async () => {
    const client = new RegistryClient(reg.host);
    const subject = appendLayers(emptyImage(), layerFromBytes(Buffer.from('signed')));
    const pushed = await write(`${reg.host}/refs/copied:1`, subject).done;
    const artifact = (n: number) =>
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MediaType.OciManifest,
          config: { mediaType: 'application/vnd.example.sbom', digest: digestOf(empty), size: 2 },
          layers: [{ mediaType: MediaType.OciEmpty, digest: digestOf(empty), size: 2 }],
          subject: { mediaType: pushed.mediaType, digest: pushed.digest, size: pushed.size },
          annotations: { n: String(n) },
        }),
      );
    const s = await client.openUpload('refs/copied');
    await s.upload(Readable.from([empty]));
    const src = memoryTarget();
    await src.push(
      { mediaType: MediaType.OciEmpty, digest: digestOf(empty), size: 2 },
      Readable.from([empty]),
    );
    const expected = [];
    for (const n of [1, 2]) {
      const bytes = artifact(n);
      const desc = {
        mediaType: MediaType.OciManifest,
        digest: digestOf(bytes),
        size: bytes.length,
      };
      await src.push(desc, Readable.from([bytes]));
      // copy() puts the manifest by digest; the registry (CNCF 2.8) answers no OCI-Subject
      await copy(src, desc.digest, registryTarget(`${reg.host}/refs/copied`), undefined);
      expected.push({
        ...desc,
        artifactType: 'application/vnd.example.sbom',
        annotations: { n: String(n) },
      });
    }
    // again: no second entry
    await client.putManifest(
      'refs/copied',
      expected[0]!.digest,
      artifact(1),
      MediaType.OciManifest,
    );
    expect(await client.referrers('refs/copied', pushed.digest)).toEqual(expected);
    // Several at once through one client (as copy() pushes an index's
    // children): none is lost.
    const more = [3, 4, 5, 6, 7, 8].map(artifact);
    await Promise.all(
      more.map((b) => client.putManifest('refs/copied', digestOf(b), b, MediaType.OciManifest)),
    );
    const listed = await client.referrers('refs/copied', pushed.digest);
    expect(listed.map((d) => d.digest).sort()).toEqual(
      [...expected.map((d) => d.digest), ...more.map((b) => digestOf(b))].sort(),
    );
  });

  it('takes a deleted referrer out of the tag schema index, where the registry has no referrers API', async () => {
    const client = new RegistryClient(reg.host);
    const subject = appendLayers(emptyImage(), layerFromBytes(Buffer.from('deleted referrers')));
    const pushed = await write(`${reg.host}/refs/deleted:1`, subject).done;
    const s = await client.openUpload('refs/deleted');
    await s.upload(Readable.from([empty]));
    const artifacts = [1, 2].map((n) => sigArtifact(pushed, { n: String(n) }));
    for (const a of artifacts)
      await client.putManifest('refs/deleted', digestOf(a), a, MediaType.OciManifest);
    const [one, two] = artifacts.map((a) => digestOf(a));
    const listed = async () =>
      (await client.referrers('refs/deleted', pushed.digest)).map((d) => d.digest);
    expect(await listed()).toEqual([one, two]);
    await client.deleteManifest('refs/deleted', one!);
    expect(await listed()).toEqual([two]);
    await client.deleteManifest('refs/deleted', two!);
    expect(await listed()).toEqual([]);
    // The last one leaves an empty index under the tag, and the subject stays.
    const tag = `sha256-${pushed.digest.slice('sha256:'.length)}`;
    const index = await client.getManifest('refs/deleted', tag);
    expect(JSON.parse(index.bytes.toString('utf8'))).toMatchObject({ manifests: [] });
    expect((await client.getManifest('refs/deleted', '1')).digest).toBe(pushed.digest);
    // Deleting the subject itself (no subject of its own) touches no index.
    await client.deleteManifest('refs/deleted', pushed.digest);
    const gone = await client.getManifest('refs/deleted', pushed.digest).catch((e: unknown) => e);
    expect((gone as { code?: string }).code).toBe('NOT_FOUND');
  });
});
