import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createRegistry,
  filesystemStorage,
  type BlobFile,
  type Registry,
  type RegistryStorage,
} from '../src/index.js';
import { eventually, pushBlob, pushImage, req, sha256 } from './helpers.js';

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

  describe('blob GETs', () => {
    /** watched is filesystem storage whose opened blobs record the buffers read into, and closes. */
    function watched(dir: string) {
      const storage = filesystemStorage(dir);
      const seen = { opened: 0, closed: 0, buffers: new Set<ArrayBufferLike>(), reads: 0 };
      const blobs = storage.blobs;
      const open = blobs.open?.bind(blobs);
      if (open === undefined) throw new Error('filesystem storage has no open()');
      const wrapped: RegistryStorage = {
        metadata: storage.metadata,
        uploads: storage.uploads,
        blobs: {
          stat: (d, o) => blobs.stat(d, o),
          get: (d, o) => blobs.get(d, o),
          open: async (d, o) => {
            const f = await open(d, o);
            if (f === undefined) return undefined;
            seen.opened++;
            const file: BlobFile = {
              read: (b, off, len, pos) => {
                seen.buffers.add(b.buffer);
                seen.reads++;
                return f.read(b, off, len, pos);
              },
              close: () => {
                seen.closed++;
                return f.close();
              },
            };
            return file;
          },
        },
      };
      return { storage: wrapped, seen };
    }

    it('sends a blob and a range of it through two reused buffers, and closes the file', async () => {
      const { storage, seen } = watched(tempDir());
      const registry = createRegistry({ storage });
      registries.push(registry);
      const { url: base } = await registry.listen();
      const data = randomBytes(5 * 1024 * 1024 + 12_345);
      const digest = await pushBlob(base, 'team/big', data);
      const whole = await req('GET', `${base}/v2/team/big/blobs/${digest}`);
      expect(whole.status).toBe(200);
      expect(whole.body.equals(data)).toBe(true);
      expect(seen.reads).toBe(6);
      expect(seen.buffers.size).toBeLessThanOrEqual(2);
      const part = await req('GET', `${base}/v2/team/big/blobs/${digest}`, {
        headers: { Range: 'bytes=1000-3000000' },
      });
      expect(part.status).toBe(206);
      expect(part.body.equals(data.subarray(1000, 3_000_001))).toBe(true);
      const tail = await req('GET', `${base}/v2/team/big/blobs/${digest}`, {
        headers: { Range: 'bytes=-10' },
      });
      expect(tail.body.equals(data.subarray(data.length - 10))).toBe(true);
      expect(seen.closed).toBe(seen.opened);
      expect(seen.opened).toBe(3);
    });

    it('stops reading and closes the file when the client goes away mid-blob', async () => {
      const { storage, seen } = watched(tempDir());
      const registry = createRegistry({ storage });
      registries.push(registry);
      const { url: base } = await registry.listen();
      const data = randomBytes(48 * 1024 * 1024);
      const digest = await pushBlob(base, 'team/huge', data);
      const u = new URL(`${base}/v2/team/huge/blobs/${digest}`);
      let received = 0;
      await new Promise<void>((resolve, reject) => {
        const r = request(
          { host: u.hostname, port: u.port, path: u.pathname, agent: false },
          (res) => {
            res.on('data', (c: Buffer) => {
              received += c.length;
              // Gone after the first bytes: the socket closes under the server.
              if (received > 0) r.destroy();
            });
            res.on('error', () => undefined);
            res.on('close', () => {
              resolve();
            });
          },
        );
        r.on('error', () => {
          resolve();
        });
        r.on('timeout', () => {
          reject(new Error('timeout'));
        });
        r.end();
      });
      expect(await eventually(() => seen.opened === 1 && seen.closed === 1, 5000)).toBe(true);
      // Far fewer reads than the blob's 48 (what was in flight when the client left).
      expect(seen.reads).toBeLessThan(24);
      const after = await req('GET', `${base}/v2/team/huge/blobs/${digest}`);
      expect(after.body.equals(data)).toBe(true);
    });
  });
});
