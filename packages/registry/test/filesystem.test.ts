import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createRegistry, filesystemStorage, type Registry } from '../src/index.js';
import { pushImage, req, sha256 } from './helpers.js';

const dirs: string[] = [];
const registries: Registry[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lading-fs-'));
  dirs.push(dir);
  return dir;
}

async function start(dir: string): Promise<{ registry: Registry; base: string }> {
  const registry = createRegistry({ storage: filesystemStorage(dir) });
  registries.push(registry);
  return { registry, base: (await registry.listen()).url };
}

afterEach(async () => {
  for (const r of registries.splice(0)) await r.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('filesystemStorage', () => {
  it('keeps blobs, manifests, tags, referrers and uploads across a restart', async () => {
    const dir = tempDir();
    const first = await start(dir);
    const img = await pushImage(first.base, 'team/app', 'v1', { layer: 'persisted layer' });
    const ref = await pushImage(first.base, 'team/app', 'sig', {
      layer: 'signature',
      subject: {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: img.digest,
        size: img.manifest.length,
      },
    });
    const post = await req('POST', `${first.base}/v2/team/app/blobs/uploads/`);
    const location = String(post.headers.location);
    const c1 = await req('PATCH', `${first.base}${location}`, {
      body: 'first half|',
      headers: { 'Content-Range': '0-10' },
    });
    expect(c1.status).toBe(202);
    await first.registry.close();

    // A half-finished upload is never visible as a blob.
    const whole = 'first half|second half';
    expect(existsSync(join(dir, 'blobs', 'sha256', sha256(whole).slice(7)))).toBe(false);

    const second = await start(dir);
    const b = second.base;
    expect((await req('GET', `${b}/v2/team/app/blobs/${img.layer}`)).text).toBe('persisted layer');
    const m = await req('GET', `${b}/v2/team/app/manifests/v1`);
    expect(m.body.equals(img.manifest)).toBe(true);
    expect(m.headers['content-type']).toBe('application/vnd.oci.image.manifest.v1+json');
    expect((await req('GET', `${b}/v2/team/app/tags/list`)).json()).toEqual({
      name: 'team/app',
      tags: ['sig', 'v1'],
    });
    expect((await req('GET', `${b}/v2/_catalog`)).json()).toEqual({ repositories: ['team/app'] });
    const referrers = (await req('GET', `${b}/v2/team/app/referrers/${img.digest}`)).json() as {
      manifests: { digest: string }[];
    };
    expect(referrers.manifests.map((x) => x.digest)).toEqual([ref.digest]);

    // The upload resumes where it stopped; the registry re-hashes from disk.
    const status = await req('GET', `${b}${location}`);
    expect(status.status).toBe(204);
    expect(status.headers.range).toBe('0-10');
    const c2 = await req('PATCH', `${b}${location}`, {
      body: 'second half',
      headers: { 'Content-Range': '11-21' },
    });
    expect(c2.headers.range).toBe('0-21');
    const put = await req('PUT', `${b}${location}?digest=${sha256(whole)}`);
    expect(put.status).toBe(201);
    expect((await req('GET', `${b}/v2/team/app/blobs/${sha256(whole)}`)).text).toBe(whole);
    // Commit leaves no temp or upload files behind.
    expect(readdirSync(join(dir, 'uploads'))).toEqual([]);
  });

  it('fails an upload with ENOENT instead of hanging when the directory is under /proc', async () => {
    // Node's recursive mkdir never returns for /proc/x (see makeDirectory).
    const { uploads } = filesystemStorage('/proc/lading-x/store');
    await expect(uploads!.create('repo')).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('still rejects a wrong digest for an upload resumed after a restart', async () => {
    const dir = tempDir();
    const first = await start(dir);
    const post = await req('POST', `${first.base}/v2/repo/blobs/uploads/`);
    await req('PATCH', `${first.base}${String(post.headers.location)}`, { body: 'abc' });
    await first.registry.close();
    const second = await start(dir);
    const put = await req(
      'PUT',
      `${second.base}${String(post.headers.location)}?digest=${sha256('abd')}`,
    );
    expect(put.status).toBe(400);
    expect(put.code()).toBe('DIGEST_INVALID');
  });

  it('refuses upload ids that are not UUIDs (no path traversal into the store)', async () => {
    const { base } = await start(tempDir());
    for (const id of ['..', 'x', '..%2f..%2fblobs']) {
      const r = await req('GET', `${base}/v2/repo/blobs/uploads/${id}`);
      expect(r.status, id).toBe(404);
      expect(r.code(), id).toBe('BLOB_UPLOAD_UNKNOWN');
    }
  });
});
