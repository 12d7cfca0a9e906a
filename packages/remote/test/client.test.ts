import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestOf, MediaType, isLadingError } from '@lading/core';
import {
  recordingProxy,
  startDistributionRegistry,
  type DistributionRegistry,
} from '@lading/testing';
import { RegistryClient, BlobUpload, startUpload } from '../src/index.js';

const user = { username: 'alice', password: 's3cret' };

describe('RegistryClient against the CNCF distribution registry', () => {
  let open: DistributionRegistry;
  let locked: DistributionRegistry;
  beforeAll(async () => {
    [open, locked] = await Promise.all([
      startDistributionRegistry(),
      startDistributionRegistry({ htpasswd: user }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([open.stop(), locked.stop()]);
  });

  for (const mode of ['stream', 'chunked', 'monolithic'] as const) {
    it(`uploads a blob and reads it back bit for bit when the mode is ${mode}`, async () => {
      const client = new RegistryClient(open.host, { useStoredCredentials: false });
      const data = randomBytes(300_000);
      const digest = digestOf(data);
      const session = await client.openUpload(`up/${mode}`);
      expect(session).toBeInstanceOf(BlobUpload);
      const result = await session.upload(
        Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]),
        {
          mode,
          chunkSize: 64 * 1024,
          expected: { digest, size: data.length },
        },
      );
      expect(result).toEqual({ digest, size: data.length });
      expect(await client.headBlob(`up/${mode}`, digest)).toMatchObject({
        digest,
        size: data.length,
      });
      const back = await buffer(await client.getBlob(`up/${mode}`, digest, { size: data.length }));
      expect(back.equals(data)).toBe(true);
      const part = await buffer(
        await client.getBlob(`up/${mode}`, digest, { range: { start: 10, end: 19 } }),
      );
      expect(part.equals(data.subarray(10, 20))).toBe(true);
    });
  }

  it('fails a blob read with DIGEST_MISMATCH when the size given is wrong', async () => {
    const client = new RegistryClient(open.host, { useStoredCredentials: false });
    const data = randomBytes(1000);
    const digest = digestOf(data);
    const s = await client.openUpload('verify/me');
    await s.upload(Readable.from([data]));
    const err = await buffer(await client.getBlob('verify/me', digest, { size: 999 })).catch(
      (e: unknown) => e,
    );
    expect(isLadingError(err, 'SIZE_MISMATCH')).toBe(true);
  });

  it('puts, gets, heads and deletes manifests and lists tags page by page', async () => {
    const client = new RegistryClient(open.host, { useStoredCredentials: false });
    const config = Buffer.from(
      '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
    );
    const s = await client.openUpload('man/ifest');
    const cfg = await s.upload(Readable.from([config]));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: { mediaType: MediaType.OciConfig, digest: cfg.digest, size: cfg.size },
        layers: [],
      }),
    );
    for (const tag of ['a', 'b', 'c', 'd', 'e']) {
      const put = await client.putManifest('man/ifest', tag, manifest, MediaType.OciManifest);
      expect(put.digest).toBe(digestOf(manifest));
    }
    const got = await client.getManifest('man/ifest', 'c');
    expect(got.bytes.equals(manifest)).toBe(true);
    expect(got.mediaType).toBe(MediaType.OciManifest);
    const head = await client.headManifest('man/ifest', got.digest);
    expect(head?.digest).toBe(got.digest);
    expect((await client.listTags('man/ifest', { pageSize: 2 })).sort()).toEqual([
      'a',
      'b',
      'c',
      'd',
      'e',
    ]);
    expect(await client.catalog({ pageSize: 1 })).toContain('man/ifest');
    await client.deleteManifest('man/ifest', got.digest);
    const gone = await client.getManifest('man/ifest', got.digest).catch((e: unknown) => e);
    expect(isLadingError(gone, 'NOT_FOUND')).toBe(true);
  });

  it('resumes a chunked upload from a saved location in another session object, then deletes the blob', async () => {
    const data = randomBytes(3000);
    const first = await startUpload(`${open.host}/low/level:ignored`, {
      useStoredCredentials: false,
    });
    expect(first.offset).toBe(0);
    // distribution answers `Range: 0-0` for an empty upload
    expect(await first.status()).toBe(0);
    await first.write(data.subarray(0, 1000));
    expect(first.offset).toBe(1000);
    const saved = first.location;
    const other = await startUpload(`${open.host}/low/level`, { useStoredCredentials: false });
    expect(await other.resume(saved)).toBe(1000);
    await other.write(data.subarray(1000));
    expect(other.offset).toBe(3000);
    await other.commit(digestOf(data));
    const client = new RegistryClient(open.host, { useStoredCredentials: false });
    expect(await client.headBlob('low/level', digestOf(data))).toMatchObject({ size: 3000 });
    await client.deleteBlob('low/level', digestOf(data));
    expect(await client.headBlob('low/level', digestOf(data))).toBeUndefined();
  });

  it('mounts a blob from another repository', async () => {
    const client = new RegistryClient(open.host, { useStoredCredentials: false });
    const data = randomBytes(5000);
    const s = await client.openUpload('mount/src');
    const r = await s.upload(Readable.from([data]));
    const m = await client.openUploadOrMount('mount/dst', {
      mount: { digest: r.digest, from: 'mount/src' },
    });
    expect(m).toEqual({ mounted: true });
    expect(await client.headBlob('mount/dst', r.digest)).toBeDefined();
  });

  it('authenticates with basic credentials and rejects a wrong password with UNAUTHORIZED', async () => {
    const good = new RegistryClient(locked.host, { auth: user, useStoredCredentials: false });
    const s = await good.openUpload('basic/repo');
    const r = await s.upload(Readable.from([Buffer.from('hello')]));
    expect(r.size).toBe(5);
    const bad = new RegistryClient(locked.host, { auth: { username: 'alice', password: 'nope' } });
    const err = await bad.openUpload('basic/repo').catch((e: unknown) => e);
    expect(isLadingError(err, 'UNAUTHORIZED')).toBe(true);
    const none = new RegistryClient(locked.host, { useStoredCredentials: false });
    const err2 = await none.headBlob('basic/repo', r.digest).catch((e: unknown) => e);
    expect(isLadingError(err2, 'UNAUTHORIZED')).toBe(true);
  });

  it('keeps the query of the upload Location and adds digest= through the URL API', async () => {
    const proxy = await recordingProxy(open.url);
    try {
      const client = new RegistryClient(proxy.host, { useStoredCredentials: false });
      const s = await client.openUpload('q/repo');
      // distribution puts a signed _state query on every Location
      expect(new URL(s.location).searchParams.has('_state')).toBe(true);
      await s.upload(Readable.from([Buffer.from('x'.repeat(100))]));
      const put = proxy.requests.find((r) => r.method === 'PUT');
      const patch = proxy.requests.find((r) => r.method === 'PATCH');
      const putUrl = new URL(put!.path, proxy.url);
      expect(putUrl.searchParams.get('digest')).toBe(digestOf('x'.repeat(100)));
      expect(putUrl.searchParams.has('_state')).toBe(true);
      // each request used the Location the previous response returned
      const post = proxy.requests.find((r) => r.method === 'POST');
      const postLoc = new URL(post!.responseHeaders!.location!);
      expect(patch!.path).toBe(postLoc.pathname + postLoc.search);
      const patchLoc = new URL(patch!.responseHeaders!.location!);
      expect(putUrl.pathname).toBe(patchLoc.pathname);
      expect(putUrl.searchParams.get('_state')).toBe(patchLoc.searchParams.get('_state'));
    } finally {
      await proxy.close();
    }
  });
});
