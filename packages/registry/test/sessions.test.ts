import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import bcrypt from 'bcryptjs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createRegistry,
  filesystemStorage,
  memoryStorage,
  type Registry,
  type RegistryOptions,
  type RegistryStorage,
  type UploadInfo,
} from '../src/index.js';
import { eventually, req, sleep } from './helpers.js';

let registries: Registry[] = [];
const dirs: string[] = [];

afterEach(async () => {
  await Promise.all(registries.map((r) => r.close()));
  registries = [];
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function start(options: RegistryOptions): Promise<string> {
  const r = createRegistry(options);
  registries.push(r);
  return (await r.listen()).url;
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'lading-sessions-'));
  dirs.push(d);
  return d;
}

async function listed(storage: RegistryStorage): Promise<UploadInfo[]> {
  const out: UploadInfo[] = [];
  for await (const u of storage.uploads?.list?.() ?? []) out.push(u);
  return out;
}

const basic = (user: string, password: string): Record<string, string> => ({
  Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
});

describe('upload session bounds', () => {
  it('answers 413 past maxUploadSize and drops the session, streamed or declared', async () => {
    const storage = memoryStorage();
    const url = await start({ storage, maxUploadSize: 1024 * 1024 });
    const post = await req('POST', `${url}/v2/big/blobs/uploads/`);
    const loc = `${url}${String(post.headers.location)}`;
    // Chunked, no length: refused once the bytes pass the cap.
    const body = Readable.from(Array.from({ length: 32 }, () => Buffer.alloc(64 * 1024, 1)));
    const patch = await req('PATCH', loc, { body });
    expect(patch.status).toBe(413);
    expect(patch.code()).toBe('SIZE_INVALID');
    expect((await req('GET', loc)).status).toBe(404);
    expect(await listed(storage)).toEqual([]);

    const second = await req('POST', `${url}/v2/big/blobs/uploads/`);
    const declared = await req('PATCH', `${url}${String(second.headers.location)}`, {
      body: Buffer.alloc(2 * 1024 * 1024),
    });
    expect(declared.status).toBe(413);
    expect(await listed(storage)).toEqual([]);

    // Up to the cap is fine.
    const third = await req('POST', `${url}/v2/big/blobs/uploads/`);
    const ok = await req('PATCH', `${url}${String(third.headers.location)}`, {
      body: Buffer.alloc(1024 * 1024),
    });
    expect(ok.status).toBe(202);
  });

  it('bounds the bytes all open sessions hold together (maxUploadBytes)', async () => {
    const storage = memoryStorage();
    const mib = 1024 * 1024;
    const url = await start({ storage, maxUploadBytes: 8 * mib });
    const statuses: number[] = [];
    const locations: string[] = [];
    // Four never-committed 3 MiB PATCHes (streamed, no length) against an 8 MiB budget.
    for (let i = 0; i < 4; i++) {
      const post = await req('POST', `${url}/v2/mem/blobs/uploads/`);
      locations.push(`${url}${String(post.headers.location)}`);
      const body = Readable.from(Array.from({ length: 48 }, () => Buffer.alloc(64 * 1024, i)));
      const patch = await req('PATCH', locations[i] ?? '', { body });
      statuses.push(patch.status);
      if (patch.status === 429) expect(patch.code()).toBe('TOOMANYREQUESTS');
    }
    expect(statuses).toEqual([202, 202, 429, 429]);
    const held = (await listed(storage)).reduce((n, u) => n + u.size, 0);
    expect(held).toBeLessThanOrEqual(8 * mib);
    expect((await req('GET', locations[2] ?? '')).status).toBe(404); // dropped
    // Cancelling a session gives its bytes back.
    expect((await req('DELETE', locations[0] ?? '')).status).toBe(204);
    const post = await req('POST', `${url}/v2/mem/blobs/uploads/`);
    const again = await req('PATCH', `${url}${String(post.headers.location)}`, {
      body: Buffer.alloc(3 * mib),
    });
    expect(again.status).toBe(202);
  });

  it('answers 429 past maxUploadSessions, and again after a session ends', async () => {
    const url = await start({ maxUploadSessions: 3 });
    const posts = [];
    for (let i = 0; i < 3; i++) posts.push(await req('POST', `${url}/v2/n/blobs/uploads/`));
    const over = await req('POST', `${url}/v2/n/blobs/uploads/`);
    expect(over.status).toBe(429);
    expect(over.code()).toBe('TOOMANYREQUESTS');
    expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
    expect((await req('DELETE', `${url}${String(posts[0]?.headers.location)}`)).status).toBe(204);
    expect((await req('POST', `${url}/v2/n/blobs/uploads/`)).status).toBe(202);
  });

  it('keeps both session caps when many POSTs arrive at once', async () => {
    for (const storage of [memoryStorage(), filesystemStorage(tempDir())]) {
      const perClient = await start({ storage, maxUploadSessionsPerClient: 4 });
      const burst = await Promise.all(
        Array.from({ length: 60 }, () => req('POST', `${perClient}/v2/r/blobs/uploads/`)),
      );
      expect(burst.filter((r) => r.status === 202)).toHaveLength(4);
      expect(burst.filter((r) => r.status === 429)).toHaveLength(56);
    }
    const total = await start({
      storage: filesystemStorage(tempDir()),
      maxUploadSessions: 5,
      maxUploadSessionsPerClient: 0,
    });
    const burst = await Promise.all(
      Array.from({ length: 60 }, () => req('POST', `${total}/v2/r/blobs/uploads/`)),
    );
    expect(burst.filter((r) => r.status === 202)).toHaveLength(5);
    // A failed create gives its reserved slot back.
    const dir = tempDir();
    const failing = await start({ storage: filesystemStorage(dir), maxUploadSessionsPerClient: 1 });
    writeFileSync(join(dir, 'uploads'), 'not a directory');
    expect((await req('POST', `${failing}/v2/r/blobs/uploads/`)).status).toBe(500);
    rmSync(join(dir, 'uploads'));
    expect((await req('POST', `${failing}/v2/r/blobs/uploads/`)).status).toBe(202);
  });

  it('caps sessions per user when authenticated and per address otherwise', async () => {
    const htpasswd = [`alice:${bcrypt.hashSync('a', 4)}`, `bob:${bcrypt.hashSync('b', 4)}`].join(
      '\n',
    );
    const url = await start({
      auth: { type: 'basic', htpasswd },
      maxUploadSessionsPerClient: 2,
    });
    for (let i = 0; i < 2; i++) {
      expect(
        (await req('POST', `${url}/v2/p/blobs/uploads/`, { headers: basic('alice', 'a') })).status,
      ).toBe(202);
    }
    const over = await req('POST', `${url}/v2/p/blobs/uploads/`, { headers: basic('alice', 'a') });
    expect(over.status).toBe(429);
    // Same address, another user: not alice's quota.
    expect(
      (await req('POST', `${url}/v2/p/blobs/uploads/`, { headers: basic('bob', 'b') })).status,
    ).toBe(202);

    const open = await start({ maxUploadSessionsPerClient: 1 });
    expect((await req('POST', `${open}/v2/p/blobs/uploads/`)).status).toBe(202);
    expect((await req('POST', `${open}/v2/p/blobs/uploads/`)).status).toBe(429);
  });
});

describe('upload session expiry', () => {
  it('cancels idle sessions on a timer, with no new session opened', async () => {
    const storage = memoryStorage();
    const url = await start({ storage, uploadTimeout: 0.4 });
    const post = await req('POST', `${url}/v2/e/blobs/uploads/`);
    expect(await listed(storage)).toHaveLength(1);
    expect(await eventually(async () => (await listed(storage)).length === 0)).toBe(true);
    expect((await req('GET', `${url}${String(post.headers.location)}`)).status).toBe(404);
  });

  it('expires sessions left over from before a restart (filesystem storage)', async () => {
    const dir = tempDir();
    const first = createRegistry({ storage: filesystemStorage(dir) });
    const { url } = await first.listen();
    const post = await req('POST', `${url}/v2/r/blobs/uploads/`);
    await req('PATCH', `${url}${String(post.headers.location)}`, { body: 'half' });
    await first.close();
    expect(readdirSync(join(dir, 'uploads'))).toHaveLength(1);

    await start({ storage: filesystemStorage(dir), uploadTimeout: 0.4 });
    expect(await eventually(() => readdirSync(join(dir, 'uploads')).length === 0)).toBe(true);
  });

  it('removes a half-created session directory left by a crash', async () => {
    const dir = tempDir();
    const id = '0b5f3c1e-8a7d-4e2b-9c6f-1d2e3f4a5b6c';
    mkdirSync(join(dir, 'uploads', id), { recursive: true });
    await start({ storage: filesystemStorage(dir), uploadTimeout: 0.4 });
    expect(await eventually(() => readdirSync(join(dir, 'uploads')).length === 0)).toBe(true);
  });

  it('stops expiring once the registry is closed', async () => {
    const storage = memoryStorage();
    const r = createRegistry({ storage, uploadTimeout: 0.3 });
    const { url } = await r.listen();
    await req('POST', `${url}/v2/c/blobs/uploads/`);
    await r.close();
    await sleep(800);
    expect(await listed(storage)).toHaveLength(1);
  });
});

describe('UploadStore.list', () => {
  for (const [kind, make] of [
    ['memory', () => memoryStorage()],
    ['filesystem', () => filesystemStorage(tempDir())],
  ] as const) {
    it(`lists open sessions with size and updatedAt (${kind})`, async () => {
      const storage = make();
      const uploads = storage.uploads;
      if (uploads === undefined) throw new Error('no uploads');
      const before = Date.now();
      const a = await uploads.create('x/a');
      const b = await uploads.create('x/b');
      const created = (await uploads.status(a.id))?.updatedAt ?? 0;
      expect(created).toBeGreaterThanOrEqual(before - 1000);
      await sleep(30);
      await uploads.append(a.id, 0, Readable.from([Buffer.from('hello')]));
      const all = (await listed(storage)).sort((x, y) => x.repository.localeCompare(y.repository));
      expect(all.map((u) => [u.id, u.repository, u.size])).toEqual([
        [a.id, 'x/a', 5],
        [b.id, 'x/b', 0],
      ]);
      expect(all[0]?.updatedAt ?? 0).toBeGreaterThan(created);
      await uploads.cancel(b.id);
      expect((await listed(storage)).map((u) => u.id)).toEqual([a.id]);
    });
  }
});
