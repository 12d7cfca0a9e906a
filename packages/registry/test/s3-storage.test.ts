// S3 storage against a real S3 implementation (OpenStack Swift's s3api,
// started by s3-up.sh): the storage contract, uploads continued by another
// storage instance, verification, cleanup and large copies.
import { randomBytes, randomUUID } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import {
  CreateMultipartUploadCommand,
  GetObjectCommand,
  PutObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
} from '@aws-sdk/client-s3';
import { isLadingError, type Digest } from '@lading/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, type Registry, type RegistryOptions } from '../src/index.js';
import type { S3Storage } from '../src/s3.js';
import { pushImage, req, sha256, sleep } from './helpers.js';
import { startS3Fixture, type S3Fixture } from './s3-helpers.js';

const MiB = 1024 * 1024;
let s3: S3Fixture;
const registries: Registry[] = [];

beforeAll(async () => {
  s3 = await startS3Fixture();
}, 300_000);
afterAll(async () => {
  for (const r of registries) await r.close();
  await (s3 as S3Fixture | undefined)?.stop();
}, 60_000);

async function serve(storage: S3Storage, options: RegistryOptions = {}): Promise<string> {
  const r = createRegistry({ ...options, storage });
  registries.push(r);
  return (await r.listen()).url;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) parts.push(c);
  return Buffer.concat(parts);
}

async function keysUnder(prefix: string): Promise<string[]> {
  const r = await s3.client.send(
    new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${prefix}/` }),
  );
  return (r.Contents ?? []).map((o) => o.Key ?? '');
}

async function multipartsUnder(prefix: string): Promise<string[]> {
  const r = await s3.client.send(
    new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: `${prefix}/` }),
  );
  return (r.Uploads ?? []).map((u) => u.UploadId ?? '');
}

/** holdBody sends a request's head and all of `body` but its last byte, and answers a way to finish it. */
function holdBody(
  url: string,
  method: string,
  path: string,
  body: Buffer,
): { socket: Socket; finish: () => Promise<string> } {
  const u = new URL(url);
  const socket = connect(Number(u.port), '127.0.0.1');
  let reply = '';
  socket.on('data', (d: Buffer) => (reply += d.toString()));
  socket.on('error', () => undefined);
  const ended = new Promise<void>((resolve) => socket.once('close', resolve));
  socket.write(
    `${method} ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: ${String(body.length)}\r\n\r\n`,
  );
  socket.write(body.subarray(0, -1));
  return {
    socket,
    finish: async () => {
      socket.write(body.subarray(-1));
      for (let i = 0; i < 200 && !reply.includes('\r\n\r\n{') && !reply.includes('\r\n\r\n'); i++) {
        await sleep(50);
      }
      await Promise.race([ended, sleep(300)]);
      socket.destroy();
      return reply;
    },
  };
}

/** stateOf reads a session's state object. */
async function stateOf(prefix: string, id: string): Promise<Record<string, unknown>> {
  const r = await s3.client.send(
    new GetObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/uploads/${id}/state` }),
  );
  return JSON.parse(await r.Body!.transformToString()) as Record<string, unknown>;
}

// Generous: the S3 store shares a loaded machine with everything else.
describe('s3Storage', { timeout: 180_000 }, () => {
  it('serves pushed images, redirecting blob GETs to a presigned URL that needs no credentials', async () => {
    const base = await serve(s3.storage(`t-${randomUUID()}`));
    const img = await pushImage(base, 'lib/app', 'v1', { layer: 'layer bytes in s3' });
    const m = await req('GET', `${base}/v2/lib/app/manifests/v1`);
    expect(m.status).toBe(200);
    expect(m.body.equals(img.manifest)).toBe(true);
    expect(m.headers['content-type']).toBe('application/vnd.oci.image.manifest.v1+json');
    const head = await req('HEAD', `${base}/v2/lib/app/blobs/${img.layer}`);
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String('layer bytes in s3'.length));
    const get = await req('GET', `${base}/v2/lib/app/blobs/${img.layer}`);
    expect(get.status).toBe(307);
    const location = String(get.headers.location);
    expect(location.startsWith(`${s3.server.endpoint}/`)).toBe(true);
    expect(location).toContain('X-Amz-Signature=');
    const object = await req('GET', location);
    expect(object.status).toBe(200);
    expect(object.text).toBe('layer bytes in s3');
    expect((await req('GET', `${base}/v2/lib/app/tags/list`)).json()).toEqual({
      name: 'lib/app',
      tags: ['v1'],
    });
    expect((await req('GET', `${base}/v2/_catalog`)).json()).toEqual({ repositories: ['lib/app'] });
    // Not linked into another repository: invisible there.
    expect((await req('HEAD', `${base}/v2/other/blobs/${img.layer}`)).status).toBe(404);
  });

  it('streams blobs through the registry, ranges included, when redirect is off', async () => {
    const base = await serve(s3.storage(`t-${randomUUID()}`, { redirect: false }));
    const img = await pushImage(base, 'plain', 'v1', { layer: '0123456789' });
    const get = await req('GET', `${base}/v2/plain/blobs/${img.layer}`);
    expect(get.status).toBe(200);
    expect(get.text).toBe('0123456789');
    const part = await req('GET', `${base}/v2/plain/blobs/${img.layer}`, {
      headers: { Range: 'bytes=3-5' },
    });
    expect(part.status).toBe(206);
    expect(part.text).toBe('345');
  });

  it('keeps referrers, deletes manifests with their tags and referrers entries', async () => {
    const base = await serve(s3.storage(`t-${randomUUID()}`));
    const subject = await pushImage(base, 'ref/app', 'v1');
    const sig = await pushImage(base, 'ref/app', 'sig', {
      subject: {
        digest: subject.digest,
        size: subject.manifest.length,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
      },
      artifactType: 'application/example.sig',
    });
    const list = (await req('GET', `${base}/v2/ref/app/referrers/${subject.digest}`)).json() as {
      manifests: { digest: string; artifactType?: string }[];
    };
    expect(list.manifests.map((d) => [d.digest, d.artifactType])).toEqual([
      [sig.digest, 'application/example.sig'],
    ]);
    expect((await req('DELETE', `${base}/v2/ref/app/manifests/${sig.digest}`)).status).toBe(202);
    expect((await req('GET', `${base}/v2/ref/app/manifests/sig`)).status).toBe(404);
    const after = (await req('GET', `${base}/v2/ref/app/referrers/${subject.digest}`)).json() as {
      manifests: unknown[];
    };
    expect(after.manifests).toEqual([]);
    expect((await req('GET', `${base}/v2/ref/app/tags/list`)).json()).toEqual({
      name: 'ref/app',
      tags: ['v1'],
    });
  });

  it('continues an upload in another storage instance, across part boundaries, and commits it', async () => {
    const prefix = `t-${randomUUID()}`;
    const a = s3.storage(prefix);
    const b = s3.storage(prefix);
    const data = randomBytes(12 * MiB + 123);
    const digest = sha256(data) as Digest;
    const { id } = await a.uploads.create('x/y');
    const chunks = [
      data.subarray(0, 3 * MiB),
      data.subarray(3 * MiB, 7 * MiB),
      data.subarray(7 * MiB),
    ];
    let offset = 0;
    for (const [i, chunk] of chunks.entries()) {
      const store = i % 2 === 0 ? a : b;
      offset = await store.uploads.append(id, offset, Readable.from([chunk]));
    }
    expect(offset).toBe(data.length);
    const status = await a.uploads.status(id);
    expect(status?.size).toBe(data.length);
    expect(status?.repository).toBe('x/y');
    expect((await readAll(await b.uploads.read(id))).equals(data)).toBe(true);
    // Only the instance that read (verified) the bytes last may commit them.
    const stale = await a.uploads.commit(id, digest).catch((e: unknown) => e);
    expect(isLadingError(stale, 'CONFLICT')).toBe(true);
    await b.uploads.commit(id, digest);
    expect(await b.uploads.status(id)).toBeUndefined();
    expect(await b.blobs.stat(digest)).toEqual({ size: data.length });
    const range = await b.blobs.get(digest, { start: 5 * MiB - 2, end: 5 * MiB + 1 });
    expect((await readAll(range!)).equals(data.subarray(5 * MiB - 2, 5 * MiB + 2))).toBe(true);
    // Nothing of the session is left behind.
    expect((await keysUnder(`${prefix}/uploads`)).length).toBe(0);
    expect(await multipartsUnder(`${prefix}/uploads`)).toEqual([]);
  });

  it('accepts more bytes after read() staged the upload', async () => {
    const s = s3.storage(`t-${randomUUID()}`);
    const first = randomBytes(6 * MiB);
    const second = randomBytes(MiB);
    const { id } = await s.uploads.create('staged');
    await s.uploads.append(id, 0, Readable.from([first]));
    expect((await readAll(await s.uploads.read(id))).equals(first)).toBe(true);
    await s.uploads.append(id, first.length, Readable.from([second]));
    const all = Buffer.concat([first, second]);
    expect((await readAll(await s.uploads.read(id))).equals(all)).toBe(true);
    await s.uploads.commit(id, sha256(all));
    expect((await readAll((await s.blobs.get(sha256(all) as Digest))!)).equals(all)).toBe(true);
  });

  it('keeps the bytes that arrived when a body fails midway, so the client can resume', async () => {
    const s = s3.storage(`t-${randomUUID()}`);
    const data = randomBytes(6 * MiB + 100);
    const { id } = await s.uploads.create('partial');
    const failing = Readable.from(
      (function* () {
        yield data.subarray(0, 3 * MiB);
        yield data.subarray(3 * MiB);
        throw new Error('client went away');
      })(),
    );
    await expect(s.uploads.append(id, 0, failing)).rejects.toThrow('client went away');
    expect((await s.uploads.status(id))?.size).toBe(data.length);
    const more = randomBytes(10);
    await s.uploads.append(id, data.length, Readable.from([more]));
    const all = Buffer.concat([data, more]);
    expect((await readAll(await s.uploads.read(id))).equals(all)).toBe(true);
  });

  it('rejects an append at the wrong offset (CONFLICT) and to an unknown session (NOT_FOUND)', async () => {
    const s = s3.storage(`t-${randomUUID()}`);
    const { id } = await s.uploads.create('c');
    await s.uploads.append(id, 0, Readable.from([Buffer.from('abc')]));
    const wrong = await s.uploads
      .append(id, 1, Readable.from([Buffer.from('x')]))
      .catch((e: unknown) => e);
    expect(isLadingError(wrong, 'CONFLICT')).toBe(true);
    const unknown = await s.uploads
      .append(randomUUID(), 0, Readable.from([Buffer.from('x')]))
      .catch((e: unknown) => e);
    expect(isLadingError(unknown, 'NOT_FOUND')).toBe(true);
    expect(await s.uploads.status('not-a-uuid')).toBeUndefined();
    expect((await s.uploads.status(id))?.size).toBe(3);
  });

  it('verifies digest through read() when the chunks came through another registry, keeping a bad blob invisible', async () => {
    const prefix = `t-${randomUUID()}`;
    const one = await serve(s3.storage(prefix));
    const two = await serve(s3.storage(prefix));
    const data = randomBytes(6 * MiB + 10);
    const post = await req('POST', `${one}/v2/v/blobs/uploads/`);
    const path = String(post.headers.location);
    await req('PATCH', `${one}${path}`, { body: data.subarray(0, 4 * MiB) });
    const patch = await req('PATCH', `${two}${path}`, { body: data.subarray(4 * MiB) });
    expect(patch.headers.range).toBe(`0-${data.length - 1}`);
    const wrongDigest = sha256('something else');
    const bad = await req('PUT', `${one}${path}?digest=${wrongDigest}`);
    expect(bad.status).toBe(400);
    expect(bad.code()).toBe('DIGEST_INVALID');
    expect((await req('HEAD', `${two}/v2/v/blobs/${wrongDigest}`)).status).toBe(404);
    // A fresh upload, finished on the other registry, goes through.
    const post2 = await req('POST', `${two}/v2/v/blobs/uploads/`);
    const path2 = String(post2.headers.location);
    await req('PATCH', `${two}${path2}`, { body: data.subarray(0, MiB) });
    const put = await req('PUT', `${one}${path2}?digest=${sha256(data)}`, {
      body: data.subarray(MiB),
    });
    expect(put.status).toBe(201);
    const head = await req('HEAD', `${two}/v2/v/blobs/${sha256(data)}`);
    expect(head.headers['content-length']).toBe(String(data.length));
  });

  it('never stores bytes under a digest they do not match when two registries write one session at once', async () => {
    const prefix = `t-${randomUUID()}`;
    const one = await serve(s3.storage(prefix, { redirect: false }));
    const two = await serve(s3.storage(prefix, { redirect: false }));
    const good = Buffer.from('GOOD-LAYER-CONTENT-0123456789');
    const evil = Buffer.from('EVIL-LAYER-CONTENT-9876543210');
    const victim = await req('POST', `${one}/v2/victim/app/blobs/uploads/?digest=${sha256(good)}`, {
      body: good,
    });
    expect(victim.status).toBe(201);
    const post = await req('POST', `${one}/v2/attacker/repo/blobs/uploads/`);
    const path = String(post.headers.location);
    // The evil bytes start through one, all but their last byte ...
    const held = holdBody(one, 'PATCH', path, evil);
    await sleep(300);
    // ... the good bytes go through two at the same offset ...
    expect((await req('PATCH', `${two}${path}`, { body: good })).status).toBe(202);
    // ... then the evil PATCH ends: it is refused, not recorded.
    expect(await held.finish()).toMatch(/^HTTP\/1\.1 416/);
    const put = await req('PUT', `${two}${path}?digest=${sha256(good)}`);
    expect(put.status).toBe(201);
    const got = await req('GET', `${one}/v2/victim/app/blobs/${sha256(good)}`);
    expect(got.body.equals(good)).toBe(true);
  });

  it('re-reads and verifies when another registry rewrote the session after this one hashed it', async () => {
    const prefix = `t-${randomUUID()}`;
    const one = await serve(s3.storage(prefix, { redirect: false }));
    const good = Buffer.from('GOOD-LAYER-CONTENT-0123456789');
    const evil = Buffer.from('EVIL-LAYER-CONTENT-9876543210');
    for (const big of [false, true]) {
      const pad = big ? randomBytes(6 * MiB) : Buffer.alloc(0);
      const post = await req('POST', `${one}/v2/attacker/repo/blobs/uploads/`);
      const path = String(post.headers.location);
      const id = String(post.headers['docker-upload-uuid']);
      expect(
        (await req('PATCH', `${one}${path}`, { body: Buffer.concat([pad, good]) })).status,
      ).toBe(202);
      // What a second writer that passed its checks in the same instant
      // leaves: a state of the same size naming other bytes.
      const state = await stateOf(prefix, id);
      const tail = `tail-forged-${randomUUID()}`;
      const tailStart = big ? 5 * MiB : 0;
      const forgedBytes = Buffer.concat([pad, evil]).subarray(tailStart);
      await s3.client.send(
        new PutObjectCommand({
          Bucket: s3.bucket,
          Key: `${prefix}/uploads/${id}/${tail}`,
          Body: forgedBytes,
        }),
      );
      await s3.client.send(
        new PutObjectCommand({
          Bucket: s3.bucket,
          Key: `${prefix}/uploads/${id}/state`,
          Body: JSON.stringify({ ...state, gen: randomUUID(), tail }),
        }),
      );
      const digest = sha256(Buffer.concat([pad, good]));
      const put = await req('PUT', `${one}${path}?digest=${digest}`);
      expect(put.status).toBe(400);
      expect(put.code()).toBe('DIGEST_INVALID');
      expect((await req('HEAD', `${one}/v2/attacker/repo/blobs/${digest}`)).status).toBe(404);
    }
  });

  it('answers 404 to an append whose session another registry cancelled meanwhile, and does not bring it back', async () => {
    const prefix = `t-${randomUUID()}`;
    const one = await serve(s3.storage(prefix));
    const two = await serve(s3.storage(prefix));
    const post = await req('POST', `${one}/v2/c/blobs/uploads/`);
    const path = String(post.headers.location);
    const id = String(post.headers['docker-upload-uuid']);
    const held = holdBody(one, 'PATCH', path, randomBytes(1000));
    await sleep(300);
    expect((await req('DELETE', `${two}${path}`)).status).toBe(204);
    const reply = await held.finish();
    expect(reply).toMatch(/^HTTP\/1\.1 404/);
    expect(reply).toContain('BLOB_UPLOAD_UNKNOWN');
    expect((await req('GET', `${one}${path}`)).status).toBe(404);
    expect(await keysUnder(`${prefix}/uploads/${id}`)).toEqual([]);
  });

  it('keeps a session that one registry is writing from the idle expiry of another', async () => {
    const prefix = `t-${randomUUID()}`;
    const one = await serve(s3.storage(prefix), { uploadTimeout: 2 });
    await serve(s3.storage(prefix), { uploadTimeout: 2 });
    const post = await req('POST', `${one}/v2/long/blobs/uploads/`);
    const path = String(post.headers.location);
    const chunk = randomBytes(2048);
    const count = 12; // 12 × 400 ms: well past the 2 s timeout
    const data = Buffer.concat(Array.from({ length: count }, () => chunk));
    const u = new URL(one);
    const socket = connect(Number(u.port), '127.0.0.1');
    let reply = '';
    socket.on('data', (d: Buffer) => (reply += d.toString()));
    socket.write(
      `PATCH ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: ${String(data.length)}\r\n\r\n`,
    );
    const id = String(post.headers['docker-upload-uuid']);
    for (let i = 0; i < count; i++) {
      socket.write(chunk);
      await sleep(400);
      // The other registry's expiry never removes the session meanwhile.
      expect(await keysUnder(`${prefix}/uploads/${id}`)).toContain(`${prefix}/uploads/${id}/state`);
    }
    for (let i = 0; i < 100 && !reply.includes('\r\n\r\n'); i++) await sleep(50);
    socket.destroy();
    expect(reply).toMatch(/^HTTP\/1\.1 202/);
    const put = await req('PUT', `${one}${path}?digest=${sha256(data)}`);
    expect(put.status).toBe(201);
  }, 60_000);

  it('lists open sessions with updatedAt and cancels them with their multipart upload', async () => {
    const prefix = `t-${randomUUID()}`;
    const s = s3.storage(prefix);
    const before = Date.now();
    const { id } = await s.uploads.create('l/m');
    await s.uploads.append(id, 0, Readable.from([randomBytes(6 * MiB)]));
    const listed = [];
    for await (const u of s.uploads.list()) listed.push(u);
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ id, repository: 'l/m', size: 6 * MiB });
    expect(listed[0]!.updatedAt).toBeGreaterThanOrEqual(before);
    expect(await multipartsUnder(`${prefix}/uploads`)).toHaveLength(1);
    expect(await s.uploads.cancel(id)).toBe(true);
    expect(await s.uploads.cancel(id)).toBe(false);
    expect(await multipartsUnder(`${prefix}/uploads`)).toEqual([]);
    expect(await keysUnder(`${prefix}/uploads`)).toEqual([]);
  });

  it('sweeps multipart uploads no session owns, leaving owned ones alone', async () => {
    const prefix = `t-${randomUUID()}`;
    const s = s3.storage(prefix);
    const { id } = await s.uploads.create('sw');
    await s.uploads.append(id, 0, Readable.from([randomBytes(5 * MiB)]));
    await s3.client.send(
      new CreateMultipartUploadCommand({
        Bucket: s3.bucket,
        Key: `${prefix}/uploads/${randomUUID()}/data`,
      }),
    );
    expect(await multipartsUnder(`${prefix}/uploads`)).toHaveLength(2);
    expect(await s.sweep({ olderThan: 0 })).toBe(1);
    expect(await multipartsUnder(`${prefix}/uploads`)).toHaveLength(1);
    expect((await s.uploads.status(id))?.size).toBe(5 * MiB);
  });

  it('copies a blob larger than maxCopySize with UploadPartCopy parts', async () => {
    const s = s3.storage(`t-${randomUUID()}`, { maxCopySize: 8 * MiB });
    const data = randomBytes(20 * MiB + 7);
    const digest = sha256(data) as Digest;
    const { id } = await s.uploads.create('big');
    await s.uploads.append(id, 0, Readable.from([data]));
    await s.uploads.commit(id, digest);
    expect(await s.blobs.stat(digest)).toEqual({ size: data.length });
    expect((await readAll((await s.blobs.get(digest))!)).equals(data)).toBe(true);
  });
});
