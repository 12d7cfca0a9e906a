import { describe, it, expect } from 'vitest';
import { recordingProxy, startDistributionRegistry } from '../src/index.js';

describe('startDistributionRegistry', () => {
  it('serves /v2/ openly when no htpasswd is given', async () => {
    const reg = await startDistributionRegistry();
    try {
      const res = await fetch(`${reg.url}/v2/`);
      expect(res.status).toBe(200);
      expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
    } finally {
      await reg.stop();
    }
  });

  it('asks for basic credentials when htpasswd is given', async () => {
    const reg = await startDistributionRegistry({ htpasswd: { username: 'u', password: 'p' } });
    try {
      const anon = await fetch(`${reg.url}/v2/`);
      expect(anon.status).toBe(401);
      expect(anon.headers.get('www-authenticate')).toMatch(/^Basic /);
      const good = await fetch(`${reg.url}/v2/`, {
        headers: { authorization: `Basic ${Buffer.from('u:p').toString('base64')}` },
      });
      expect(good.status).toBe(200);
      const bad = await fetch(`${reg.url}/v2/`, {
        headers: { authorization: `Basic ${Buffer.from('u:x').toString('base64')}` },
      });
      expect(bad.status).toBe(401);
    } finally {
      await reg.stop();
    }
  });

  it('fails clearly when the binary is missing', async () => {
    await expect(
      startDistributionRegistry({ binary: '/nonexistent/docker-registry' }),
    ).rejects.toThrow(/scripts\/ensure-peers\.sh/);
  });
});

describe('recordingProxy', () => {
  it('forwards requests and records them in order with body byte counts', async () => {
    const reg = await startDistributionRegistry();
    const proxy = await recordingProxy(reg.url);
    try {
      const post = await fetch(`${proxy.url}/v2/a/blobs/uploads/`, { method: 'POST' });
      expect(post.status).toBe(202);
      const location = post.headers.get('location') ?? '';
      // distribution builds absolute Locations from the Host it saw: the proxy's
      expect(location.startsWith(proxy.url)).toBe(true);
      const put = new URL(location);
      put.searchParams.set(
        'digest',
        'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
      );
      const res = await fetch(put, { method: 'PUT', body: 'hello' });
      expect(res.status).toBe(201);
      expect(proxy.requests.map((r) => r.method)).toEqual(['POST', 'PUT']);
      const [p, u] = proxy.requests;
      expect(u!.bodyBytes).toBe(5);
      expect(p!.bodyBytes).toBe(0);
      expect(u!.firstByteTick).toBeGreaterThan(p!.responseTick!);
      expect(u!.status).toBe(201);
    } finally {
      await proxy.close();
      await reg.stop();
    }
  });
});
