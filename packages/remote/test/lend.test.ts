import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, digestOf, isLadingError, type Digest } from '@lading/core';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { htpasswdEntry } from '@lading/testing';
import { RegistryClient } from '../src/index.js';
import { FakeRegistry } from './fake-registry.js';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/**
 * Taker is a slow taker that checks what it is lent: every chunk must keep
 * its bytes until its take settles, and the reader must go on reading
 * while takes are pending.
 */
class Taker {
  readonly hash = createHash('sha256');
  readonly memory = new Map<ArrayBufferLike, number>();
  bytes = 0;
  inFlight = 0;
  mostInFlight = 0;
  rewritten = 0;

  readonly take = async (chunk: Buffer): Promise<void> => {
    const before = sha(chunk);
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.memory.set(chunk.buffer, (this.memory.get(chunk.buffer) ?? 0) + 1);
    this.inFlight++;
    this.mostInFlight = Math.max(this.mostInFlight, this.inFlight);
    await sleep(2);
    if (sha(chunk) !== before) this.rewritten++;
    this.inFlight--;
  };

  digest(): Digest {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

describe('lendBlob against @lading/registry (bearer tokens)', () => {
  let registry: Registry;
  let host: string;
  const blob = randomBytes(4 * 1024 * 1024 + 123);
  const digest = digestOf(blob);
  const alice = { username: 'alice', password: 'wonderland' };

  beforeAll(async () => {
    registry = createRegistry({
      storage: memoryStorage(),
      auth: {
        type: 'token',
        users: htpasswdEntry('alice', 'wonderland'),
        grants: (user) => (user === 'alice' ? ['pull', 'push'] : []),
      },
    });
    host = new URL((await registry.listen({ host: '127.0.0.1', port: 0 })).url).host;
    const session = await new RegistryClient(host, { auth: alice }).openUpload('lend/me');
    expect((await session.upload(Readable.from([blob]))).digest).toBe(digest);
  });
  afterAll(() => registry.close());

  it('hands the blob out in reused memory and never reads into a chunk before its take settles', async () => {
    const taker = new Taker();
    const client = new RegistryClient(host, { auth: alice });
    expect(await client.lendBlob('lend/me', digest, taker.take)).toBe(true);
    expect(taker.bytes).toBe(blob.length);
    expect(taker.digest()).toBe(digest);
    expect(taker.rewritten).toBe(0);
    // The same memory is lent again and again, from 8 buffers (16 at most).
    expect(Math.max(...taker.memory.values())).toBeGreaterThan(1);
    expect(taker.mostInFlight).toBeGreaterThan(1);
    expect(taker.mostInFlight).toBeLessThanOrEqual(16);
  });

  it('answers false and takes nothing without credentials (401), for a missing blob and with a dispatcher of the caller', async () => {
    const taker = new Taker();
    const anonymous = new RegistryClient(host, { useStoredCredentials: false });
    expect(await anonymous.lendBlob('lend/me', digest, taker.take)).toBe(false);
    const client = new RegistryClient(host, { auth: alice });
    expect(await client.lendBlob('lend/me', digestOf('absent'), taker.take)).toBe(false);
    const agent = new Agent();
    try {
      const own = new RegistryClient(host, { auth: alice, dispatcher: agent });
      expect(await own.lendBlob('lend/me', digest, taker.take)).toBe(false);
    } finally {
      await agent.close();
    }
    expect(taker.bytes).toBe(0);
  });
});

describe('lendBlob against answers it leaves to getBlob', () => {
  let fake: FakeRegistry;
  const blob = randomBytes(300_000);
  const digest = digestOf(blob);

  beforeAll(async () => {
    fake = await new FakeRegistry().start();
    fake.ctx.blobs.set(digest, blob);
  });
  afterAll(() => fake.close());

  it('answers false for a chunked body and a redirect to https, and getBlob then reads them', async () => {
    fake.faults = [
      (req, res) => {
        if (req.method !== 'GET' || !(req.url ?? '').endsWith(digest)) return false;
        if (req.headers.connection === 'close' && (req.url ?? '').includes('/s/')) {
          // A closed loopback port: lend must not go there (it is https).
          res.writeHead(307, { location: `https://127.0.0.1:9/blob` }).end();
          return true;
        }
        if ((req.url ?? '').includes('/c/')) {
          res.writeHead(200, { 'transfer-encoding': 'chunked' });
          res.end(blob);
          return true;
        }
        return false;
      },
    ];
    const client = new RegistryClient(fake.host);
    for (const repo of ['s', 'c']) {
      const taker = new Taker();
      expect(await client.lendBlob(repo, digest, taker.take)).toBe(false);
      expect(taker.bytes).toBe(0);
      expect(sha(await buffer(await client.getBlob(repo, digest)))).toBe(sha(blob));
    }
  });

  it('follows a redirect to another plain-HTTP origin without the credentials', async () => {
    const storage = await new FakeRegistry().start();
    try {
      storage.ctx.blobs.set(digest, blob);
      fake.requireAuth = `Basic ${Buffer.from('u:p').toString('base64')}`;
      fake.faults = [
        (req, res) => {
          if (req.method !== 'GET' || !(req.url ?? '').endsWith(digest)) return false;
          if (req.headers.authorization !== fake.requireAuth) return false;
          res.writeHead(307, { location: `${storage.url}/v2/x/blobs/${digest}?sig=s3cr3t` }).end();
          return true;
        },
      ];
      const taker = new Taker();
      const client = new RegistryClient(fake.host, { auth: { username: 'u', password: 'p' } });
      expect(await client.lendBlob('x', digest, taker.take)).toBe(true);
      expect(taker.digest()).toBe(digest);
      const redirected = storage.seen.filter((r) => r.url.includes('sig=s3cr3t'));
      expect(redirected).toHaveLength(1);
      expect(redirected[0]!.authorization).toBeUndefined();
      expect(
        fake.seen.some((r) => r.url.endsWith(digest) && r.authorization === fake.requireAuth),
      ).toBe(true);
    } finally {
      fake.requireAuth = undefined;
      await storage.close();
    }
  });

  it('fails with a temporary NETWORK error when the connection closes in the body', async () => {
    fake.faults = [
      (req, res) => {
        if (req.method !== 'GET' || !(req.url ?? '').endsWith(digest)) return false;
        res.writeHead(200, { 'content-length': blob.length });
        res.write(blob.subarray(0, 100_000), () => res.destroy());
        return true;
      },
    ];
    const taker = new Taker();
    const err = await new RegistryClient(fake.host)
      .lendBlob('x', digest, taker.take)
      .catch((e: unknown) => e);
    expect(isLadingError(err) && err.code === ErrorCode.Network).toBe(true);
    expect((err as { temporary?: boolean }).temporary).toBe(true);
    expect(taker.bytes).toBeGreaterThan(0);
    expect(taker.bytes).toBeLessThan(blob.length);
  });

  it('stops reading and rejects with the error of a failed take, the last one included', async () => {
    fake.faults = [];
    const refused = new Error('disk full');
    let takes = 0;
    const err = await new RegistryClient(fake.host)
      .lendBlob('x', digest, () => {
        takes++;
        return Promise.reject(refused);
      })
      .catch((e: unknown) => e);
    expect(err).toBe(refused);
    expect(takes).toBeGreaterThan(0);
    // The take of the last chunk fails: the blob was not taken.
    let seen = 0;
    const last = await new RegistryClient(fake.host)
      .lendBlob('x', digest, async (chunk) => {
        seen += chunk.length;
        const lastChunk = seen === blob.length;
        await sleep(1);
        if (lastChunk) throw refused;
      })
      .catch((e: unknown) => e);
    expect(seen).toBe(blob.length);
    expect(last).toBe(refused);
  });

  it('fails ABORTED when the signal fires while the body flows', async () => {
    fake.faults = [];
    const controller = new AbortController();
    const err = await new RegistryClient(fake.host)
      .lendBlob(
        'x',
        digest,
        async () => {
          controller.abort();
          await sleep(1);
        },
        { signal: controller.signal },
      )
      .catch((e: unknown) => e);
    expect(isLadingError(err) && err.code === ErrorCode.Aborted).toBe(true);
  });
});
