import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { appendLayers, emptyImage, imageIndex, layerFromBytes, withPlatform } from '@lading/core';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { htpasswdEntry, recordingProxy, type RecordingProxy } from '@lading/testing';
import { RegistryClient, createSession, pull, write, writeIndex } from '../src/index.js';
import { testImage } from './helpers.js';

const alice = { username: 'alice', password: 'wonderland' };

describe('RemoteSession', () => {
  let registry: Registry;
  let proxy: RecordingProxy;
  beforeAll(async () => {
    registry = createRegistry({
      storage: memoryStorage(),
      auth: { type: 'token', users: htpasswdEntry('alice', 'wonderland') },
    });
    const { port } = await registry.listen({ host: '127.0.0.1', port: 0 });
    // The token realm follows the Host header, which the proxy keeps: token
    // requests go through the proxy too.
    proxy = await recordingProxy(`http://127.0.0.1:${port}`);
  });
  afterAll(async () => {
    await proxy.close();
    await registry.close();
  });
  beforeEach(() => {
    proxy.clear();
  });
  const pings = (): number =>
    proxy.requests.filter((r) => r.method === 'GET' && r.path === '/v2/').length;
  // The first request to the registry stands in for a ping: its 401 teaches
  // the challenge, and the requests behind it come with a token.
  const challenges = (): number =>
    proxy.requests.filter((r) => r.status === 401 && !r.path.startsWith('/token')).length;
  const tokenRequests = (): string[] =>
    proxy.requests.filter((r) => r.path.startsWith('/token')).map((r) => r.path);
  const tokens = (): number => tokenRequests().length;

  it('is challenged once and shares tokens across an index and its four children when writeIndex has no session', async () => {
    const platforms = ['amd64', 'arm64', 'ppc64le', 's390x'];
    const index = imageIndex(
      platforms.map((architecture) => ({
        image: withPlatform(appendLayers(emptyImage(), layerFromBytes(Buffer.from(architecture))), {
          os: 'linux',
          architecture,
        }),
      })),
    );
    const result = await writeIndex(`${proxy.host}/multi/app:1`, index, { auth: alice }).done;
    expect(result.digest).toBe(await index.digest());
    expect(pings()).toBe(0);
    expect(challenges()).toBe(1);
    // one token per scope set (pull for HEAD, pull,push for uploads), reused by every child
    expect(tokens()).toBeGreaterThan(0);
    expect(tokens()).toBeLessThanOrEqual(2);
    expect(new Set(tokenRequests()).size).toBe(tokens());
  });

  it('keeps tokens apart when two calls get the same options object but no session', async () => {
    const options = { auth: alice };
    await write(`${proxy.host}/apart/app:1`, testImage([layerFromBytes(Buffer.from('a'))]), options)
      .done;
    const afterFirst = { challenges: challenges(), tokens: tokens() };
    expect(afterFirst.challenges).toBe(1);
    expect(afterFirst.tokens).toBeGreaterThan(0);
    await write(`${proxy.host}/apart/app:2`, testImage([layerFromBytes(Buffer.from('b'))]), options)
      .done;
    expect(challenges()).toBe(2);
    expect(tokens()).toBe(2 * afterFirst.tokens);
    // clients built without options do not share either
    await new RegistryClient(proxy.host).ping();
    await new RegistryClient(proxy.host).ping();
    expect(pings()).toBe(2);
  });

  it('is challenged once and reuses tokens across calls given one session', async () => {
    const session = createSession({ auth: alice });
    try {
      await write(`${proxy.host}/shared/app:1`, testImage([layerFromBytes(Buffer.from('c'))]), {
        session,
      }).done;
      const afterFirst = tokens();
      await write(`${proxy.host}/shared/app:2`, testImage([layerFromBytes(Buffer.from('d'))]), {
        session,
      }).done;
      const pulled = await pull(`${proxy.host}/shared/app:2`, { session });
      expect(pulled.mediaType).toBe((await testImage([]).manifest()).mediaType);
      expect(challenges()).toBe(1);
      expect(pings()).toBe(0);
      // same repository, same scopes: no new token
      expect(tokens()).toBe(afterFirst);
    } finally {
      await session.close();
    }
  });

  it('uses the session for credentials and ignores the call options when both are given', async () => {
    const session = createSession({ useStoredCredentials: false });
    const push = write(
      `${proxy.host}/nocreds/app:1`,
      testImage([layerFromBytes(Buffer.from('e'))]),
      {
        session,
        auth: alice,
      },
    );
    await expect(push.authorized).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await expect(push.done).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });
});
