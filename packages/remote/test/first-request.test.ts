import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, digestOf, isLadingError, type Digest } from '@lading/core';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { htpasswdEntry, recordingProxy, type RecordingProxy } from '@lading/testing';
import { RegistryClient, createSession } from '../src/index.js';
import { FakeRegistry } from './fake-registry.js';

// A transport sends no ping of its own: its first request goes at once and
// stands in for one (a 401 teaches the challenge), and the requests made
// while it is out wait for its answer.

const alice = { username: 'alice', password: 'wonderland' };

describe('the first request of a transport, on a token registry', () => {
  let registry: Registry;
  let held: Promise<unknown> | undefined;
  let proxy: RecordingProxy;
  const blobs: Digest[] = [];
  beforeAll(async () => {
    registry = createRegistry({
      storage: memoryStorage(),
      auth: { type: 'token', users: htpasswdEntry('alice', 'wonderland') },
    });
    const { port } = await registry.listen({ host: '127.0.0.1', port: 0 });
    proxy = await recordingProxy(`http://127.0.0.1:${port}`, { hold: () => held });
    const client = new RegistryClient(proxy.host, { auth: alice });
    for (let i = 0; i < 4; i++) {
      const data = randomBytes(100 + i);
      const s = await client.openUpload('first/app');
      await s.upload(Readable.from([data]));
      blobs.push(digestOf(data));
    }
  });
  afterAll(async () => {
    await proxy.close();
    await registry.close();
  });
  beforeEach(() => {
    held = undefined;
    proxy.clear();
  });

  it('goes without a ping, and the requests beside it come once its challenge is answered', async () => {
    const client = new RegistryClient(proxy.host, { auth: alice });
    const found = await Promise.all(blobs.map((d) => client.headBlob('first/app', d)));
    expect(found.map((f) => f?.digest)).toEqual(blobs);
    const registryRequests = proxy.requests.filter((r) => !r.path.startsWith('/token'));
    expect(registryRequests.some((r) => r.path === '/v2/')).toBe(false);
    // One 401 (the first HEAD), one token, then every HEAD with it.
    expect(registryRequests.map((r) => r.status)).toEqual([401, 200, 200, 200, 200]);
    expect(proxy.requests.filter((r) => r.path.startsWith('/token'))).toHaveLength(1);
  });

  it('sends credentials from the first request on when the session was pinged first', async () => {
    const session = createSession({ auth: alice });
    try {
      await new RegistryClient(proxy.host, { session }).ping();
      const found = await new RegistryClient(proxy.host, { session }).headBlob(
        'first/app',
        blobs[0]!,
      );
      expect(found?.digest).toBe(blobs[0]);
      expect(
        proxy.requests
          .filter((r) => !r.path.startsWith('/token'))
          .map((r) => `${r.method} ${r.path.split('/blobs/')[0]} ${String(r.status)}`),
      ).toEqual(['GET /v2/ 401', 'HEAD /v2/first/app 200']);
    } finally {
      await session.close();
    }
  });

  it('lets a request waiting behind it stop at once with ABORTED', async () => {
    let release!: () => void;
    held = new Promise<void>((r) => {
      release = r;
    });
    const client = new RegistryClient(proxy.host, { auth: alice, retry: false });
    const first = client.headBlob('first/app', blobs[0]!);
    const controller = new AbortController();
    const second = client.headBlob('first/app', blobs[1]!, { signal: controller.signal });
    const started = Date.now();
    setTimeout(() => {
      controller.abort();
    }, 50);
    const err = await second.catch((e: unknown) => e);
    expect(isLadingError(err) && err.code === ErrorCode.Aborted).toBe(true);
    expect(Date.now() - started).toBeLessThan(1000);
    // Only the first request reached the registry; it still completes.
    expect(proxy.requests).toHaveLength(1);
    held = undefined;
    release();
    expect((await first)?.digest).toBe(blobs[0]);
  });
});

describe('the first request of a transport, failing', () => {
  let fake: FakeRegistry;
  beforeAll(async () => {
    fake = await new FakeRegistry().start();
  });
  afterAll(() => fake.close());

  it('lets the requests waiting behind it go on their own', async () => {
    const data = randomBytes(64);
    const digest = digestOf(data);
    fake.ctx.blobs.set(digest, data);
    let cut = 0;
    fake.faults = [
      (req) => {
        if (cut > 0) return false;
        cut++;
        req.socket.destroy();
        return true;
      },
    ];
    const client = new RegistryClient(fake.host, { retry: false });
    const [first, second] = await Promise.allSettled([
      client.headBlob('x/y', digest),
      client.headBlob('x/y', digest),
    ]);
    expect(first.status).toBe('rejected');
    expect(
      first.status === 'rejected' &&
        isLadingError(first.reason) &&
        first.reason.code === ErrorCode.Network,
    ).toBe(true);
    expect(second.status === 'fulfilled' ? second.value?.digest : second.reason).toBe(digest);
    expect(fake.seen.some((q) => q.url === '/v2/')).toBe(false);
  });
});
