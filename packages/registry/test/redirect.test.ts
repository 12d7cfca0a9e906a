import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createRegistry,
  filesystemStorage,
  httpObjectStorage,
  readOnlyStorage,
  type HttpObjectStorage,
  type Registry,
  type RegistryAuth,
} from '../src/index.js';
import { pushImage, req, sha256 } from './helpers.js';

const run = promisify(execFile);
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(
  auth: RegistryAuth = { type: 'none' },
): Promise<{ objects: HttpObjectStorage; registry: Registry; base: string; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'lading-objects-'));
  cleanups.push(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const objects = httpObjectStorage({ dir });
  await objects.start();
  cleanups.push(() => objects.close());
  const registry = createRegistry({ storage: objects.storage, auth });
  const { url } = await registry.listen();
  cleanups.push(() => registry.close());
  return { objects, registry, base: url, dir };
}

describe('redirect-capable storage', () => {
  it('hands uploads to the object server and redirects blob GETs there (307)', async () => {
    const { objects, base } = await setup();
    const data = 'bytes that live in object storage';
    const digest = sha256(data);
    // POST: the upload location is absolute, on the object server.
    const post = await req('POST', `${base}/v2/obj/app/blobs/uploads/`);
    expect(post.status).toBe(202);
    const location = String(post.headers.location);
    expect(location.startsWith(`${objects.url}/uploads/`)).toBe(true);
    // Streaming PATCH to the object server sends the client back to the registry.
    const patch = await req('PATCH', location, { body: Readable.from([Buffer.from(data)]) });
    expect(patch.status).toBe(202);
    expect(patch.headers.range).toBe(`0-${data.length - 1}`);
    const back = String(patch.headers.location);
    expect(back).toBe(
      `${base}/v2/obj/app/blobs/uploads/${String(post.headers['docker-upload-uuid'])}`,
    );
    const close = new URL(back);
    close.searchParams.set('digest', digest);
    const put = await req('PUT', close.toString());
    expect(put.status).toBe(201);
    // GET redirects; HEAD answers locally.
    const get = await req('GET', `${base}/v2/obj/app/blobs/${digest}`);
    expect(get.status).toBe(307);
    const target = String(get.headers.location);
    expect(target.startsWith(`${objects.url}/blobs/${digest}?`)).toBe(true);
    expect((await req('GET', target)).text).toBe(data);
    const ranged = await req('GET', target, { headers: { Range: 'bytes=0-4' } });
    expect(ranged.status).toBe(206);
    expect(ranged.text).toBe('bytes');
    const head = await req('HEAD', `${base}/v2/obj/app/blobs/${digest}`);
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(data.length));
    // The signature protects the object URL.
    const tampered = target.replace(/sig=[^&]+/, 'sig=forged');
    expect((await req('GET', tampered)).status).toBe(403);
  });

  it('verifies bytes it never saw: a wrong digest is refused at the closing PUT', async () => {
    const { base } = await setup();
    const post = await req('POST', `${base}/v2/obj/app/blobs/uploads/`);
    const patch = await req('PATCH', String(post.headers.location), { body: 'real bytes' });
    const close = new URL(String(patch.headers.location));
    close.searchParams.set('digest', sha256('other bytes'));
    const put = await req('PUT', close.toString());
    expect(put.status).toBe(400);
    expect(put.code()).toBe('DIGEST_INVALID');
  });

  it('completes a monolithic PUT sent straight to the object server', async () => {
    const { base } = await setup();
    const data = 'monolithic to object storage';
    const post = await req('POST', `${base}/v2/obj/mono/blobs/uploads/`);
    const url = new URL(String(post.headers.location));
    url.searchParams.set('digest', sha256(data));
    const put = await req('PUT', url.toString(), { body: data });
    expect(put.status).toBe(201);
    expect(put.headers.location).toBe(`${base}/v2/obj/mono/blobs/${sha256(data)}`);
    expect(put.headers['docker-content-digest']).toBe(sha256(data));
    const wrong = await req('POST', `${base}/v2/obj/mono/blobs/uploads/`);
    const wurl = new URL(String(wrong.headers.location));
    wurl.searchParams.set('digest', sha256('nope'));
    const bad = await req('PUT', wurl.toString(), { body: data });
    expect(bad.status).toBe(400);
    expect(bad.code()).toBe('DIGEST_INVALID');
  });

  it('serves skopeo push and pull through the object server, redirected downloads carrying no credentials', async () => {
    const users = `ci:${bcrypt.hashSync('s3cret', 4)}\n`;
    const { objects, base } = await setup({ type: 'token', users, service: 'objects' });
    const work = mkdtempSync(join(tmpdir(), 'lading-objects-skopeo-'));
    cleanups.push(() => {
      rmSync(work, { recursive: true, force: true });
    });
    const layout = join(work, 'layout');
    await run('umoci', ['init', '--layout', layout]);
    await run('umoci', ['new', '--image', `${layout}:v1`]);
    mkdirSync(join(work, 'content'));
    writeFileSync(join(work, 'content', 'file.txt'), 'object storage layer\n'.repeat(500));
    await run('umoci', ['insert', '--image', `${layout}:v1`, join(work, 'content'), '/data']);
    const host = base.replace('http://', '');
    await run('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      'ci:s3cret',
      `oci:${layout}:v1`,
      `docker://${host}/obj/skopeo:v1`,
    ]);
    const pulled = join(work, 'pulled');
    await run('skopeo', [
      'copy',
      '--src-tls-verify=false',
      '--src-creds',
      'ci:s3cret',
      `docker://${host}/obj/skopeo:v1`,
      `oci:${pulled}:v1`,
    ]);
    const want = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    const got = JSON.parse(readFileSync(join(pulled, 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    expect(got.manifests[0]!.digest).toBe(want.manifests[0]!.digest);
    // Uploads and blob downloads went to the object server, without Authorization.
    expect(
      objects.requests.some((r) => r.method === 'PATCH' && r.path.startsWith('/uploads/')),
    ).toBe(true);
    expect(objects.requests.some((r) => r.method === 'GET' && r.path.startsWith('/blobs/'))).toBe(
      true,
    );
    // Redirected downloads arrive without credentials. (skopeo 1.9 does send
    // its registry token along with PATCHes to an upload location on another
    // host; the object server relies on the URL signature alone.)
    const downloads = objects.requests.filter((r) => r.path.startsWith('/blobs/'));
    expect(downloads.every((r) => !r.authorization)).toBe(true);
  });
});

describe('read-only storage', () => {
  it('serves pulls and answers pushes and deletes with 405 UNSUPPORTED', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lading-ro-'));
    cleanups.push(() => {
      rmSync(dir, { recursive: true, force: true });
    });
    const writable = createRegistry({ storage: filesystemStorage(dir) });
    const w = await writable.listen();
    const img = await pushImage(w.url, 'ro/app', 'v1');
    await writable.close();

    const registry = createRegistry({ storage: readOnlyStorage(filesystemStorage(dir)) });
    const { url } = await registry.listen();
    cleanups.push(() => registry.close());
    expect((await req('GET', `${url}/v2/ro/app/manifests/v1`)).body.equals(img.manifest)).toBe(
      true,
    );
    expect((await req('GET', `${url}/v2/ro/app/blobs/${img.layer}`)).status).toBe(200);
    expect((await req('GET', `${url}/v2/ro/app/tags/list`)).json()).toEqual({
      name: 'ro/app',
      tags: ['v1'],
    });
    const post = await req('POST', `${url}/v2/ro/app/blobs/uploads/`);
    expect(post.status).toBe(405);
    expect(post.code()).toBe('UNSUPPORTED');
    const put = await req('PUT', `${url}/v2/ro/app/manifests/v2`, {
      body: img.manifest,
      headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
    });
    expect(put.status).toBe(405);
    expect((await req('DELETE', `${url}/v2/ro/app/manifests/v1`)).status).toBe(405);
    expect((await req('DELETE', `${url}/v2/ro/app/blobs/${img.layer}`)).status).toBe(405);
  });
});
