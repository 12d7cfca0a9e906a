// Conformance-style tests after the OCI distribution-spec categories
// (pull, push, content discovery, content management), over real HTTP.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createRegistry,
  filesystemStorage,
  memoryStorage,
  type Registry,
  type RegistryStorage,
} from '../src/index.js';
import { pushBlob, pushImage, req, sha256 } from './helpers.js';

const storages: [string, () => { storage: RegistryStorage; cleanup: () => void }][] = [
  ['memory', () => ({ storage: memoryStorage(), cleanup: () => undefined })],
  [
    'filesystem',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'lading-conformance-'));
      return {
        storage: filesystemStorage(dir),
        cleanup: () => {
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  ],
];

describe.each(storages)('registry over %s storage', (_kind, make) => {
  let registry: Registry;
  let base: string;
  let cleanup: () => void;

  beforeAll(async () => {
    const made = make();
    cleanup = made.cleanup;
    registry = createRegistry({ storage: made.storage });
    base = (await registry.listen({ port: 0 })).url;
  });
  afterAll(async () => {
    await registry.close();
    cleanup();
  });

  describe('determining support', () => {
    it('answers 200 {} with the API version header on GET /v2/', async () => {
      const r = await req('GET', `${base}/v2/`);
      expect(r.status).toBe(200);
      expect(r.json()).toEqual({});
      expect(r.headers['docker-distribution-api-version']).toBe('registry/2.0');
    });
  });

  describe('pull', () => {
    it('serves manifests by tag and digest with type, digest and length', async () => {
      const img = await pushImage(base, 'pull/basic', 'v1');
      for (const ref of ['v1', img.digest]) {
        const r = await req('GET', `${base}/v2/pull/basic/manifests/${ref}`);
        expect(r.status).toBe(200);
        expect(r.headers['content-type']).toBe('application/vnd.oci.image.manifest.v1+json');
        expect(r.headers['docker-content-digest']).toBe(img.digest);
        expect(Number(r.headers['content-length'])).toBe(img.manifest.length);
        expect(r.body.equals(img.manifest)).toBe(true);
        const h = await req('HEAD', `${base}/v2/pull/basic/manifests/${ref}`);
        expect(h.status).toBe(200);
        expect(h.headers['docker-content-digest']).toBe(img.digest);
        expect(Number(h.headers['content-length'])).toBe(img.manifest.length);
        expect(h.body.length).toBe(0);
      }
    });

    it('serves blobs with digest and length, and HEAD without a body', async () => {
      const img = await pushImage(base, 'pull/blobs', 'v1', { layer: 'hello layer bytes' });
      const r = await req('GET', `${base}/v2/pull/blobs/blobs/${img.layer}`);
      expect(r.status).toBe(200);
      expect(r.text).toBe('hello layer bytes');
      expect(r.headers['docker-content-digest']).toBe(img.layer);
      const h = await req('HEAD', `${base}/v2/pull/blobs/blobs/${img.layer}`);
      expect(h.status).toBe(200);
      expect(h.headers['content-length']).toBe('17');
      expect(h.headers['docker-content-digest']).toBe(img.layer);
    });

    it('answers 206 with Content-Range for a byte range, 416 when unsatisfiable', async () => {
      const d = await pushBlob(base, 'pull/range', '0123456789');
      const r = await req('GET', `${base}/v2/pull/range/blobs/${d}`, {
        headers: { Range: 'bytes=2-5' },
      });
      expect(r.status).toBe(206);
      expect(r.text).toBe('2345');
      expect(r.headers['content-range']).toBe('bytes 2-5/10');
      const open = await req('GET', `${base}/v2/pull/range/blobs/${d}`, {
        headers: { Range: 'bytes=7-' },
      });
      expect(open.status).toBe(206);
      expect(open.text).toBe('789');
      const suffix = await req('GET', `${base}/v2/pull/range/blobs/${d}`, {
        headers: { Range: 'bytes=-2' },
      });
      expect(suffix.text).toBe('89');
      const bad = await req('GET', `${base}/v2/pull/range/blobs/${d}`, {
        headers: { Range: 'bytes=20-30' },
      });
      expect(bad.status).toBe(416);
      expect(bad.headers['content-range']).toBe('bytes */10');
    });

    it('answers 404 with spec codes for unknown content', async () => {
      await pushImage(base, 'pull/missing', 'v1');
      const unknownDigest = sha256('nothing');
      const b = await req('GET', `${base}/v2/pull/missing/blobs/${unknownDigest}`);
      expect(b.status).toBe(404);
      expect(b.code()).toBe('BLOB_UNKNOWN');
      const hb = await req('HEAD', `${base}/v2/pull/missing/blobs/${unknownDigest}`);
      expect(hb.status).toBe(404);
      const m = await req('GET', `${base}/v2/pull/missing/manifests/nope`);
      expect(m.status).toBe(404);
      expect(m.code()).toBe('MANIFEST_UNKNOWN');
      const md = await req('GET', `${base}/v2/pull/missing/manifests/${unknownDigest}`);
      expect(md.code()).toBe('MANIFEST_UNKNOWN');
      const repo = await req('GET', `${base}/v2/no/such/repo/manifests/latest`);
      expect(repo.status).toBe(404);
      expect(repo.code()).toBe('MANIFEST_UNKNOWN');
    });

    it('keeps blobs per repository: a blob pushed to one repo is unknown in another', async () => {
      const d = await pushBlob(base, 'pull/owner', 'private bytes');
      expect((await req('HEAD', `${base}/v2/pull/owner/blobs/${d}`)).status).toBe(200);
      expect((await req('HEAD', `${base}/v2/pull/other/blobs/${d}`)).status).toBe(404);
    });

    it('rejects invalid names, digests and path tricks', async () => {
      for (const path of [
        '/v2/UPPER/tags/list',
        '/v2/a/../b/tags/list',
        '/v2/-a/tags/list',
        '/v2/a%2fb/tags/list',
        '/v2/a//b/tags/list',
      ]) {
        const r = await req('GET', `${base}${path}`);
        expect(r.status, path).toBe(400);
        expect(r.code(), path).toBe('NAME_INVALID');
      }
      const bad = await req('GET', `${base}/v2/pull/basic/blobs/sha256:xyz`);
      expect(bad.status).toBe(400);
      expect(bad.code()).toBe('DIGEST_INVALID');
    });
  });

  describe('push', () => {
    it('accepts POST then PUT with Location, Range, UUID and chunk-min headers', async () => {
      const post = await req('POST', `${base}/v2/push/mono/blobs/uploads/`);
      expect(post.status).toBe(202);
      const uuid = String(post.headers['docker-upload-uuid']);
      expect(post.headers.location).toBe(`/v2/push/mono/blobs/uploads/${uuid}`);
      expect(post.headers.range).toBe('0-0');
      expect(post.headers['oci-chunk-min-length']).toBe('0');
      const data = 'monolithic';
      const put = await req('PUT', `${base}${post.headers.location}?digest=${sha256(data)}`, {
        body: data,
      });
      expect(put.status).toBe(201);
      expect(put.headers.location).toBe(`/v2/push/mono/blobs/${sha256(data)}`);
      expect(put.headers['docker-content-digest']).toBe(sha256(data));
      expect((await req('GET', `${base}${put.headers.location}`)).text).toBe(data);
    });

    it('accepts a single POST with ?digest= and a body', async () => {
      const data = 'single post';
      const r = await req('POST', `${base}/v2/push/single/blobs/uploads/?digest=${sha256(data)}`, {
        body: data,
        headers: { 'Content-Type': 'application/octet-stream' },
      });
      expect(r.status).toBe(201);
      expect(r.headers.location).toBe(`/v2/push/single/blobs/${sha256(data)}`);
      expect((await req('GET', `${base}${r.headers.location}`)).text).toBe(data);
    });

    it('accepts a streaming PATCH then PUT ?digest= without a body', async () => {
      const post = await req('POST', `${base}/v2/push/stream/blobs/uploads/`);
      const data = Buffer.alloc(300_000, 7);
      const patch = await req('PATCH', `${base}${post.headers.location}`, {
        body: data,
        headers: { 'Content-Type': 'application/octet-stream' },
      });
      expect(patch.status).toBe(202);
      expect(patch.headers.range).toBe('0-299999');
      expect(patch.headers.location).toBe(post.headers.location);
      const put = await req('PUT', `${base}${patch.headers.location}?digest=${sha256(data)}`);
      expect(put.status).toBe(201);
    });

    it('accepts ordered chunks, reports status, and answers 416 out of order', async () => {
      const post = await req('POST', `${base}/v2/push/chunks/blobs/uploads/`);
      const loc = `${base}${post.headers.location}`;
      const c1 = await req('PATCH', loc, { body: 'abcde', headers: { 'Content-Range': '0-4' } });
      expect(c1.status).toBe(202);
      expect(c1.headers.range).toBe('0-4');
      const wrong = await req('PATCH', loc, { body: 'xyz', headers: { 'Content-Range': '7-9' } });
      expect(wrong.status).toBe(416);
      expect(wrong.headers.range).toBe('0-4');
      expect(wrong.headers.location).toBe(post.headers.location);
      const status = await req('GET', loc);
      expect(status.status).toBe(204);
      expect(status.headers.range).toBe('0-4');
      expect(status.headers.location).toBe(post.headers.location);
      const c2 = await req('PATCH', loc, { body: 'fgh', headers: { 'Content-Range': '5-7' } });
      expect(c2.headers.range).toBe('0-7');
      const put = await req('PUT', `${loc}?digest=${sha256('abcdefghij')}`, {
        body: 'ij',
        headers: { 'Content-Range': '8-9' },
      });
      expect(put.status).toBe(201);
      expect((await req('GET', `${base}/v2/push/chunks/blobs/${sha256('abcdefghij')}`)).text).toBe(
        'abcdefghij',
      );
    });

    it('answers 416 when the final PUT chunk is out of order', async () => {
      const post = await req('POST', `${base}/v2/push/final416/blobs/uploads/`);
      const loc = `${base}${post.headers.location}`;
      await req('PATCH', loc, { body: 'abc', headers: { 'Content-Range': '0-2' } });
      const put = await req('PUT', `${loc}?digest=${sha256('abcdef')}`, {
        body: 'ef',
        headers: { 'Content-Range': '4-5' },
      });
      expect(put.status).toBe(416);
    });

    it('rejects a wrong digest with DIGEST_INVALID and forgets the session', async () => {
      const post = await req('POST', `${base}/v2/push/wrong/blobs/uploads/`);
      const put = await req('PUT', `${base}${post.headers.location}?digest=${sha256('other')}`, {
        body: 'actual',
      });
      expect(put.status).toBe(400);
      expect(put.code()).toBe('DIGEST_INVALID');
      expect((await req('HEAD', `${base}/v2/push/wrong/blobs/${sha256('actual')}`)).status).toBe(
        404,
      );
      expect((await req('GET', `${base}${post.headers.location}`)).status).toBe(404);
      const noDigest = await req('POST', `${base}/v2/push/wrong/blobs/uploads/`);
      const bad = await req('PUT', `${base}${noDigest.headers.location}?digest=md5:abc`, {
        body: 'x',
      });
      expect(bad.status).toBe(400);
      expect(bad.code()).toBe('DIGEST_INVALID');
    });

    it('cancels an upload with DELETE (204), then answers BLOB_UPLOAD_UNKNOWN', async () => {
      const post = await req('POST', `${base}/v2/push/cancel/blobs/uploads/`);
      const loc = `${base}${post.headers.location}`;
      expect((await req('DELETE', loc)).status).toBe(204);
      for (const method of ['GET', 'PATCH', 'PUT', 'DELETE']) {
        const r = await req(method, method === 'PUT' ? `${loc}?digest=${sha256('')}` : loc);
        expect(r.status, method).toBe(404);
        expect(r.code(), method).toBe('BLOB_UPLOAD_UNKNOWN');
      }
    });

    it("does not let one repository use another repository's upload session", async () => {
      const post = await req('POST', `${base}/v2/push/mine/blobs/uploads/`);
      const id = String(post.headers['docker-upload-uuid']);
      const r = await req('GET', `${base}/v2/push/theirs/blobs/uploads/${id}`);
      expect(r.status).toBe(404);
      expect(r.code()).toBe('BLOB_UPLOAD_UNKNOWN');
    });

    it('mounts a blob from another repository (201), falls back to a session (202)', async () => {
      const d = await pushBlob(base, 'push/source', 'mountable');
      const m = await req(
        'POST',
        `${base}/v2/push/target/blobs/uploads/?mount=${d}&from=push/source`,
      );
      expect(m.status).toBe(201);
      expect(m.headers.location).toBe(`/v2/push/target/blobs/${d}`);
      expect(m.headers['docker-content-digest']).toBe(d);
      expect((await req('GET', `${base}/v2/push/target/blobs/${d}`)).text).toBe('mountable');
      const missing = await req(
        'POST',
        `${base}/v2/push/target/blobs/uploads/?mount=${sha256('x')}&from=push/source`,
      );
      expect(missing.status).toBe(202);
      expect(missing.headers.location).toMatch(/^\/v2\/push\/target\/blobs\/uploads\//);
      const wrongRepo = await req(
        'POST',
        `${base}/v2/push/target2/blobs/uploads/?mount=${d}&from=push/nowhere`,
      );
      expect(wrongRepo.status).toBe(202);
    });

    it('pushes manifests with Location and digest; by digest must match the body', async () => {
      const img = await pushImage(base, 'push/manifest', 'v1');
      const byDigest = await req('PUT', `${base}/v2/push/manifest/manifests/${img.digest}`, {
        body: img.manifest,
        headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
      });
      expect(byDigest.status).toBe(201);
      expect(byDigest.headers.location).toBe(`/v2/push/manifest/manifests/${img.digest}`);
      expect(byDigest.headers['docker-content-digest']).toBe(img.digest);
      const mismatch = await req('PUT', `${base}/v2/push/manifest/manifests/${sha256('nope')}`, {
        body: img.manifest,
        headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
      });
      expect(mismatch.status).toBe(400);
      expect(mismatch.code()).toBe('DIGEST_INVALID');
    });

    it('stores manifests byte for byte and returns the pushed Content-Type', async () => {
      const img = await pushImage(base, 'push/docker', 'v1');
      const doc = JSON.parse(img.manifest.toString()) as Record<string, unknown>;
      doc.mediaType = 'application/vnd.docker.distribution.manifest.v2+json';
      const bytes = Buffer.from(`${JSON.stringify(doc, null, 3)}\n`);
      const put = await req('PUT', `${base}/v2/push/docker/manifests/docker`, {
        body: bytes,
        headers: { 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json' },
      });
      expect(put.status).toBe(201);
      const get = await req('GET', `${base}/v2/push/docker/manifests/docker`);
      expect(get.headers['content-type']).toBe(
        'application/vnd.docker.distribution.manifest.v2+json',
      );
      expect(get.body.equals(bytes)).toBe(true);
    });

    it('rejects manifests referencing unknown blobs or children with MANIFEST_BLOB_UNKNOWN', async () => {
      const img = await pushImage(base, 'push/refs', 'v1');
      const doc = JSON.parse(img.manifest.toString()) as { layers: { digest: string }[] };
      doc.layers[0]!.digest = sha256('not pushed');
      const r = await req('PUT', `${base}/v2/push/refs/manifests/broken`, {
        body: JSON.stringify(doc),
        headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
      });
      expect(r.status).toBe(400);
      expect(r.code()).toBe('MANIFEST_BLOB_UNKNOWN');
      const index = {
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: sha256('ghost') as string,
            size: 5,
          },
        ],
      };
      const ri = await req('PUT', `${base}/v2/push/refs/manifests/index`, {
        body: JSON.stringify(index),
        headers: { 'Content-Type': 'application/vnd.oci.image.index.v1+json' },
      });
      expect(ri.code()).toBe('MANIFEST_BLOB_UNKNOWN');
      index.manifests[0] = {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: img.digest,
        size: img.manifest.length,
      };
      const ok = await req('PUT', `${base}/v2/push/refs/manifests/index`, {
        body: JSON.stringify(index),
        headers: { 'Content-Type': 'application/vnd.oci.image.index.v1+json' },
      });
      expect(ok.status).toBe(201);
    });

    it('rejects malformed and oversized manifests', async () => {
      const put = (body: string | Buffer, type = 'application/vnd.oci.image.manifest.v1+json') =>
        req('PUT', `${base}/v2/push/bad/manifests/t`, { body, headers: { 'Content-Type': type } });
      for (const body of [
        '{',
        '[]',
        '{"schemaVersion":1}',
        '{"schemaVersion":2,"config":{},"layers":[]}',
      ]) {
        const r = await put(body);
        expect(r.status, body).toBe(400);
        expect(r.code(), body).toBe('MANIFEST_INVALID');
      }
      const mismatch = await put(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: [],
        }),
      );
      expect(mismatch.code()).toBe('MANIFEST_INVALID');
      const big = await put(Buffer.alloc(4 * 1024 * 1024 + 1, 32));
      expect(big.status).toBe(413);
      expect(big.code()).toBe('MANIFEST_INVALID');
      const badTag = await req('PUT', `${base}/v2/push/bad/manifests/-bad`, { body: '{}' });
      expect(badTag.status).toBe(400);
    });

    it('checks descriptor sizes, and does not require foreign layers (urls) to exist', async () => {
      const img = await pushImage(base, 'push/sizes', 'v1');
      const doc = JSON.parse(img.manifest.toString()) as {
        layers: { digest: string; size: number; mediaType: string; urls?: string[] }[];
      };
      doc.layers[0]!.size += 1;
      const wrongSize = await req('PUT', `${base}/v2/push/sizes/manifests/wrong`, {
        body: JSON.stringify(doc),
        headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
      });
      expect(wrongSize.status).toBe(400);
      expect(wrongSize.code()).toBe('MANIFEST_INVALID');
      doc.layers[0]!.size -= 1;
      doc.layers.push({
        mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
        digest: sha256('foreign layer'),
        size: 13,
        urls: ['https://example.invalid/layer.tar.gz'],
      });
      const foreign = await req('PUT', `${base}/v2/push/sizes/manifests/foreign`, {
        body: JSON.stringify(doc),
        headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
      });
      expect(foreign.status).toBe(201);
    });

    it('handles the empty blob: upload without a body, HEAD and GET with length 0', async () => {
      const empty = sha256('');
      const post = await req('POST', `${base}/v2/push/empty/blobs/uploads/`);
      const put = await req('PUT', `${base}${String(post.headers.location)}?digest=${empty}`);
      expect(put.status).toBe(201);
      const head = await req('HEAD', `${base}/v2/push/empty/blobs/${empty}`);
      expect(head.status).toBe(200);
      expect(head.headers['content-length']).toBe('0');
      const get = await req('GET', `${base}/v2/push/empty/blobs/${empty}`);
      expect(get.status).toBe(200);
      expect(get.body.length).toBe(0);
      expect(get.headers['docker-content-digest']).toBe(empty);
    });

    it('answers 416 when the first chunk does not start at 0', async () => {
      const post = await req('POST', `${base}/v2/push/first/blobs/uploads/`);
      const r = await req('PATCH', `${base}${String(post.headers.location)}`, {
        body: 'abc',
        headers: { 'Content-Range': '1-3' },
      });
      expect(r.status).toBe(416);
      expect(r.code()).toBe('BLOB_UPLOAD_INVALID');
    });

    it('drops Content-Type parameters and accepts Docker manifest lists', async () => {
      const img = await pushImage(base, 'push/list', 'v1');
      const put = await req('PUT', `${base}/v2/push/list/manifests/params`, {
        body: img.manifest,
        headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json; charset=utf-8' },
      });
      expect(put.status).toBe(201);
      const get = await req('HEAD', `${base}/v2/push/list/manifests/params`);
      expect(get.headers['content-type']).toBe('application/vnd.oci.image.manifest.v1+json');
      const list = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json',
          manifests: [
            {
              mediaType: 'application/vnd.oci.image.manifest.v1+json',
              digest: img.digest,
              size: img.manifest.length,
              platform: { architecture: 'amd64', os: 'linux' },
            },
          ],
        }),
      );
      const putList = await req('PUT', `${base}/v2/push/list/manifests/list`, {
        body: list,
        headers: { 'Content-Type': 'application/vnd.docker.distribution.manifest.list.v2+json' },
      });
      expect(putList.status).toBe(201);
      const getList = await req('GET', `${base}/v2/push/list/manifests/list`);
      expect(getList.headers['content-type']).toBe(
        'application/vnd.docker.distribution.manifest.list.v2+json',
      );
      expect(getList.body.equals(list)).toBe(true);
      const unknown = await req('HEAD', `${base}/v2/push/list/manifests/nope`);
      expect(unknown.status).toBe(404);
      expect(unknown.body.length).toBe(0);
    });

    it('lists an index with a subject among referrers without an artifactType', async () => {
      const img = await pushImage(base, 'push/idxref', 'v1');
      const index = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: [],
          subject: {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: img.digest,
            size: img.manifest.length,
          },
          annotations: { note: 'index referrer' },
        }),
      );
      const put = await req('PUT', `${base}/v2/push/idxref/manifests/${sha256(index)}`, {
        body: index,
        headers: { 'Content-Type': 'application/vnd.oci.image.index.v1+json' },
      });
      expect(put.status).toBe(201);
      expect(put.headers['oci-subject']).toBe(img.digest);
      const refs = (await req('GET', `${base}/v2/push/idxref/referrers/${img.digest}`)).json() as {
        manifests: Record<string, unknown>[];
      };
      expect(refs.manifests).toEqual([
        {
          mediaType: 'application/vnd.oci.image.index.v1+json',
          digest: sha256(index),
          size: index.length,
          annotations: { note: 'index referrer' },
        },
      ]);
    });

    it('answers OCI-Subject for a manifest with a subject, even when the subject is absent', async () => {
      const subject = {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: sha256('future'),
        size: 6,
      };
      const put = await req('PUT', `${base}/v2/push/subject/manifests/sig`, {
        body: JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: {
            mediaType: 'application/vnd.oci.empty.v1+json',
            digest: await pushBlob(base, 'push/subject', '{}'),
            size: 2,
          },
          layers: [],
          subject,
        }),
        headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
      });
      expect(put.status).toBe(201);
      expect(put.headers['oci-subject']).toBe(subject.digest);
    });

    it('tags a manifest pushed by digest with ?tag= and answers OCI-Tag', async () => {
      const img = await pushImage(base, 'push/multitag', 'base');
      const r = await req('PUT', `${base}/v2/push/multitag/manifests/${img.digest}?tag=a&tag=b`, {
        body: img.manifest,
        headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
      });
      expect(r.status).toBe(201);
      expect(r.headers['oci-tag']).toBe('a, b');
      expect((await req('GET', `${base}/v2/push/multitag/tags/list`)).json()).toEqual({
        name: 'push/multitag',
        tags: ['a', 'b', 'base'],
      });
    });
  });

  describe('content discovery', () => {
    it('lists tags sorted with n/last pagination and a Link header', async () => {
      const img = await pushImage(base, 'disc/tags', 't0');
      for (const t of ['c', 'a', 'B', 'b']) {
        await req('PUT', `${base}/v2/disc/tags/manifests/${t}`, {
          body: img.manifest,
          headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
        });
      }
      const all = await req('GET', `${base}/v2/disc/tags/tags/list`);
      expect(all.json()).toEqual({ name: 'disc/tags', tags: ['B', 'a', 'b', 'c', 't0'] });
      const p1 = await req('GET', `${base}/v2/disc/tags/tags/list?n=2`);
      expect(p1.json()).toEqual({ name: 'disc/tags', tags: ['B', 'a'] });
      expect(p1.headers.link).toBe('</v2/disc/tags/tags/list?n=2&last=a>; rel="next"');
      const p2 = await req('GET', `${base}/v2/disc/tags/tags/list?n=2&last=a`);
      expect((p2.json() as { tags: string[] }).tags).toEqual(['b', 'c']);
      const p3 = await req('GET', `${base}/v2/disc/tags/tags/list?n=2&last=c`);
      expect((p3.json() as { tags: string[] }).tags).toEqual(['t0']);
      expect(p3.headers.link).toBeUndefined();
      const zero = await req('GET', `${base}/v2/disc/tags/tags/list?n=0`);
      expect((zero.json() as { tags: string[] }).tags).toEqual([]);
      expect(zero.headers.link).toBeUndefined();
      const lastOnly = await req('GET', `${base}/v2/disc/tags/tags/list?last=b`);
      expect((lastOnly.json() as { tags: string[] }).tags).toEqual(['c', 't0']);
      const unknown = await req('GET', `${base}/v2/disc/none/tags/list`);
      expect(unknown.status).toBe(404);
      expect(unknown.code()).toBe('NAME_UNKNOWN');
    });

    it('lists repositories in the catalog with pagination', async () => {
      const r = createRegistry();
      const { url } = await r.listen();
      try {
        for (const name of ['b', 'a', 'c/d']) await pushBlob(url, name, name);
        expect((await req('GET', `${url}/v2/_catalog`)).json()).toEqual({
          repositories: ['a', 'b', 'c/d'],
        });
        const p1 = await req('GET', `${url}/v2/_catalog?n=1`);
        expect(p1.json()).toEqual({ repositories: ['a'] });
        expect(p1.headers.link).toBe('</v2/_catalog?n=1&last=a>; rel="next"');
        const p2 = await req('GET', `${url}/v2/_catalog?n=5&last=a`);
        expect(p2.json()).toEqual({ repositories: ['b', 'c/d'] });
        expect((await req('GET', `${url}/v2/_catalog?n=x`)).status).toBe(400);
      } finally {
        await r.close();
      }
    });

    it('lists referrers with artifactType, annotations and the filter header', async () => {
      const img = await pushImage(base, 'disc/refs', 'v1');
      const subject = {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: img.digest,
        size: img.manifest.length,
      };
      const sbom = await pushImage(base, 'disc/refs', 'sbom', {
        layer: 'sbom',
        subject,
        artifactType: 'application/vnd.example.sbom',
        annotations: { 'org.example': 'yes' },
      });
      const sig = await pushImage(base, 'disc/refs', 'sig', { layer: 'sig', subject });
      const all = await req('GET', `${base}/v2/disc/refs/referrers/${img.digest}`);
      expect(all.status).toBe(200);
      expect(all.headers['content-type']).toBe('application/vnd.oci.image.index.v1+json');
      const index = all.json() as {
        schemaVersion: number;
        manifests: {
          digest: string;
          artifactType?: string;
          annotations?: Record<string, string>;
          size: number;
        }[];
      };
      expect(index.schemaVersion).toBe(2);
      expect(index.manifests.map((m) => m.digest).sort()).toEqual([sbom.digest, sig.digest].sort());
      const sbomEntry = index.manifests.find((m) => m.digest === sbom.digest)!;
      expect(sbomEntry.artifactType).toBe('application/vnd.example.sbom');
      expect(sbomEntry.annotations).toEqual({ 'org.example': 'yes' });
      expect(sbomEntry.size).toBe(sbom.manifest.length);
      // Without artifactType, the config media type stands in.
      expect(index.manifests.find((m) => m.digest === sig.digest)!.artifactType).toBe(
        'application/vnd.oci.image.config.v1+json',
      );
      const filtered = await req(
        'GET',
        `${base}/v2/disc/refs/referrers/${img.digest}?artifactType=application/vnd.example.sbom`,
      );
      expect(filtered.headers['oci-filters-applied']).toBe('artifactType');
      expect((filtered.json() as { manifests: unknown[] }).manifests).toHaveLength(1);
      const none = await req('GET', `${base}/v2/disc/refs/referrers/${sha256('none')}`);
      expect(none.status).toBe(200);
      expect((none.json() as { manifests: unknown[] }).manifests).toEqual([]);
      const bad = await req('GET', `${base}/v2/disc/refs/referrers/sha256:nope`);
      expect(bad.status).toBe(400);
      // Deleting the referrer removes it from the list.
      expect((await req('DELETE', `${base}/v2/disc/refs/manifests/${sig.digest}`)).status).toBe(
        202,
      );
      const after = await req('GET', `${base}/v2/disc/refs/referrers/${img.digest}`);
      expect(
        (after.json() as { manifests: { digest: string }[] }).manifests.map((m) => m.digest),
      ).toEqual([sbom.digest]);
    });
  });

  describe('content management', () => {
    it('deletes tags, manifests and blobs with 202, then answers 404', async () => {
      const img = await pushImage(base, 'mgmt/del', 'v1');
      await req('PUT', `${base}/v2/mgmt/del/manifests/v2`, {
        body: img.manifest,
        headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
      });
      expect((await req('DELETE', `${base}/v2/mgmt/del/manifests/v1`)).status).toBe(202);
      expect((await req('GET', `${base}/v2/mgmt/del/manifests/v1`)).status).toBe(404);
      expect((await req('GET', `${base}/v2/mgmt/del/manifests/v2`)).status).toBe(200);
      expect((await req('DELETE', `${base}/v2/mgmt/del/manifests/${img.digest}`)).status).toBe(202);
      expect((await req('GET', `${base}/v2/mgmt/del/manifests/${img.digest}`)).status).toBe(404);
      // Tags pointing at a deleted manifest go with it.
      expect((await req('GET', `${base}/v2/mgmt/del/manifests/v2`)).status).toBe(404);
      const again = await req('DELETE', `${base}/v2/mgmt/del/manifests/${img.digest}`);
      expect(again.status).toBe(404);
      expect(again.code()).toBe('MANIFEST_UNKNOWN');
      expect((await req('DELETE', `${base}/v2/mgmt/del/blobs/${img.layer}`)).status).toBe(202);
      expect((await req('GET', `${base}/v2/mgmt/del/blobs/${img.layer}`)).status).toBe(404);
      const blobAgain = await req('DELETE', `${base}/v2/mgmt/del/blobs/${img.layer}`);
      expect(blobAgain.status).toBe(404);
      expect(blobAgain.code()).toBe('BLOB_UNKNOWN');
    });

    it('answers 405 UNSUPPORTED when deletion is disabled', async () => {
      const r = createRegistry({ deleteEnabled: false });
      const { url } = await r.listen();
      try {
        const img = await pushImage(url, 'nodelete', 'v1');
        const m = await req('DELETE', `${url}/v2/nodelete/manifests/${img.digest}`);
        expect(m.status).toBe(405);
        expect(m.code()).toBe('UNSUPPORTED');
        expect((await req('DELETE', `${url}/v2/nodelete/blobs/${img.layer}`)).status).toBe(405);
      } finally {
        await r.close();
      }
    });
  });
});
