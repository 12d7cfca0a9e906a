import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { describe, expect, it } from 'vitest';
import {
  createRegistry,
  isRepositoryName,
  isTag,
  memoryStorage,
  parseHtpasswd,
} from '../src/index.js';
import { eventually, pushImage, req } from './helpers.js';

describe('createRegistry', () => {
  it('serves through its handler mounted in a server of our own', async () => {
    const registry = createRegistry();
    const server = createServer(registry.handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const img = await pushImage(base, 'mounted/app', 'v1');
      const got = await req('GET', `${base}/v2/mounted/app/manifests/v1`);
      expect(got.body.equals(img.manifest)).toBe(true);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('listens on IPv6 loopback and refuses a second listen', async () => {
    const registry = createRegistry();
    const { url, port } = await registry.listen({ host: '::1' });
    try {
      expect(url).toBe(`http://[::1]:${port}`);
      expect((await req('GET', `${url}/v2/`)).status).toBe(200);
      await expect(registry.listen()).rejects.toThrow(/already listening/);
    } finally {
      await registry.close();
    }
    await registry.close(); // closing twice is harmless
  });

  it('reads users from an htpasswd file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lading-htpasswd-'));
    const file = join(dir, 'htpasswd');
    writeFileSync(file, `ci:${bcrypt.hashSync('pw', 4)}\n`);
    const registry = createRegistry({ auth: { type: 'basic', htpasswdFile: file } });
    const { url } = await registry.listen();
    try {
      const auth = `Basic ${Buffer.from('ci:pw').toString('base64')}`;
      expect((await req('GET', `${url}/v2/`, { headers: { Authorization: auth } })).status).toBe(
        200,
      );
    } finally {
      await registry.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('names', () => {
  it('accepts spec repository names and tags, and refuses the rest', () => {
    for (const n of ['a', 'library/ubuntu', 'a.b_c__d-e--f/g0', 'x/y/z'])
      expect(isRepositoryName(n), n).toBe(true);
    for (const n of [
      '',
      'A',
      'a/',
      '/a',
      'a//b',
      'a/../b',
      '..',
      'a_',
      'a___b',
      '-a',
      'a'.repeat(256),
    ]) {
      expect(isRepositoryName(n), n).toBe(false);
    }
    for (const t of ['latest', 'v1.2.3', '_x', 'A-b.c_d', 'a'.repeat(128)])
      expect(isTag(t), t).toBe(true);
    for (const t of ['', '.x', '-x', 'a/b', 'a:b', 'a'.repeat(129)])
      expect(isTag(t), t).toBe(false);
  });

  it('parses htpasswd lines, skipping comments and blanks', () => {
    const users = parseHtpasswd('# c\n\nalice:$2y$05$abc\r\nbob:$2b$05$def\nbroken\n');
    expect([...users.keys()]).toEqual(['alice', 'bob']);
    expect(users.get('alice')).toBe('$2y$05$abc');
  });
});

describe('rate limit', () => {
  it('answers 429 TOOMANYREQUESTS with Retry-After past the limit', async () => {
    const registry = createRegistry({ rateLimit: { requests: 3, perSeconds: 3600 } });
    const { url } = await registry.listen();
    try {
      for (let i = 0; i < 3; i++) expect((await req('GET', `${url}/v2/`)).status).toBe(200);
      const r = await req('GET', `${url}/v2/`);
      expect(r.status).toBe(429);
      expect(r.code()).toBe('TOOMANYREQUESTS');
      expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    } finally {
      await registry.close();
    }
  });
});

describe('upload expiry', () => {
  it('cancels idle upload sessions and keeps the active ones', async () => {
    const storage = memoryStorage();
    const registry = createRegistry({ storage, uploadTimeout: 1 });
    const { url } = await registry.listen();
    try {
      const idle = await req('POST', `${url}/v2/exp/blobs/uploads/`);
      const active = await req('POST', `${url}/v2/exp/blobs/uploads/`);
      let activeStatus = 0;
      // Touch the active session every 100 ms until the idle one is gone
      // (looked up in the store: a GET would count as activity).
      const idleId = String(idle.headers['docker-upload-uuid']);
      const expired = await eventually(async () => {
        activeStatus = (await req('GET', `${url}${String(active.headers.location)}`)).status;
        return (await storage.uploads?.status(idleId)) === undefined;
      });
      expect(expired).toBe(true);
      expect(activeStatus).toBe(204);
      const gone = await req('GET', `${url}${String(idle.headers.location)}`);
      expect(gone.status).toBe(404);
      expect(gone.code()).toBe('BLOB_UPLOAD_UNKNOWN');
      expect((await req('GET', `${url}${String(active.headers.location)}`)).status).toBe(204);
    } finally {
      await registry.close();
    }
  });
});
