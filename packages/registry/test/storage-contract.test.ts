// The storage error contract (src/storage/types.ts) held against memory,
// filesystem and S3 storage (Swift's S3 API, started by s3-up.sh): what is
// absent is an answer, NOT_FOUND comes only from the upload calls that need
// a session and means "no such session", CONFLICT only from a misplaced
// append. Then the registry's side: it maps those codes and nothing else.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { ErrorCode, isLadingError, LadingError } from '@lading/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createRegistry,
  filesystemStorage,
  memoryStorage,
  type Registry,
  type RegistryStorage,
  type UploadStore,
} from '../src/index.js';
import { req, sha256 } from './helpers.js';
import { startS3Fixture, type S3Fixture } from './s3-helpers.js';

let s3: S3Fixture | undefined;
const dirs: string[] = [];

beforeAll(async () => {
  s3 = await startS3Fixture('lading-contract');
}, 300_000);
afterAll(async () => {
  await s3?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 60_000);

const storages: [string, () => RegistryStorage][] = [
  ['memoryStorage', () => memoryStorage()],
  [
    'filesystemStorage',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'lading-contract-'));
      dirs.push(dir);
      return filesystemStorage(dir);
    },
  ],
  [
    's3Storage',
    () => {
      if (s3 === undefined) throw new Error('the S3 store did not start');
      return s3.storage(`contract-${randomUUID()}`);
    },
  ],
];

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return isLadingError(err) ? err.code : `not a LadingError: ${String(err)}`;
  }
  return 'resolved';
}

function body(text: string): Readable {
  return Readable.from([Buffer.from(text)]);
}

async function readAll(stream: Readable): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) parts.push(c);
  return Buffer.concat(parts).toString();
}

function uploadsOf(storage: RegistryStorage): UploadStore {
  if (storage.uploads === undefined) throw new Error('storage without uploads');
  return storage.uploads;
}

const missing = sha256('never stored');

describe.each(storages)('%s under the storage error contract', { timeout: 120_000 }, (_, make) => {
  it('answers absent blobs, manifests, tags and links without throwing', async () => {
    const { blobs, metadata: meta } = make();
    expect(await blobs.stat(missing)).toBeUndefined();
    expect(await blobs.get(missing)).toBeUndefined();
    if (blobs.delete !== undefined) expect(await blobs.delete(missing)).toBe(false);
    expect(await meta.repositoryExists('no/such')).toBe(false);
    expect(await meta.getManifest('no/such', missing)).toBeUndefined();
    expect(await meta.resolveTag('no/such', 'latest')).toBeUndefined();
    expect(await meta.listTags('no/such')).toEqual([]);
    expect(await meta.hasBlob('no/such', missing)).toBe(false);
    expect(await meta.referrers('no/such', missing)).toEqual([]);
    expect(await meta.deleteManifest?.('no/such', missing)).toBe(false);
    expect(await meta.deleteTag?.('no/such', 'latest')).toBe(false);
    expect(await meta.unlinkBlob?.('no/such', missing)).toBe(false);
  });

  it('rejects append, read and commit of an unknown session with NOT_FOUND, and answers status and cancel', async () => {
    const uploads = uploadsOf(make());
    for (const id of [randomUUID(), 'not-a-session-id']) {
      expect(await uploads.status(id)).toBeUndefined();
      const data = body('bytes');
      expect(await code(uploads.append(id, 0, data))).toBe(ErrorCode.NotFound);
      expect(data.destroyed).toBe(true);
      expect(await code(uploads.read(id))).toBe(ErrorCode.NotFound);
      expect(await code(uploads.commit(id, missing))).toBe(ErrorCode.NotFound);
      expect(await uploads.cancel(id)).toBe(false);
    }
  });

  it('rejects an append at the wrong offset with CONFLICT and keeps the session as it was', async () => {
    const uploads = uploadsOf(make());
    const { id } = await uploads.create('lib/app');
    expect(await uploads.append(id, 0, body('abc'))).toBe(3);
    const late = body('def');
    expect(await code(uploads.append(id, 1, late))).toBe(ErrorCode.Conflict);
    expect(late.destroyed).toBe(true);
    expect(await uploads.status(id)).toMatchObject({ repository: 'lib/app', size: 3 });
    expect(await readAll(await uploads.read(id))).toBe('abc');
    expect(await uploads.cancel(id)).toBe(true);
  });

  it('treats a committed or cancelled session as unknown: NOT_FOUND from append, read and commit', async () => {
    const storage = make();
    const uploads = uploadsOf(storage);
    const committed = await uploads.create('lib/app');
    await uploads.append(committed.id, 0, body('blob bytes'));
    const digest = sha256('blob bytes');
    await uploads.commit(committed.id, digest);
    expect(await storage.blobs.stat(digest)).toEqual({ size: 10 });
    const cancelled = await uploads.create('lib/app');
    expect(await uploads.cancel(cancelled.id)).toBe(true);
    for (const { id } of [committed, cancelled]) {
      expect(await uploads.status(id)).toBeUndefined();
      expect(await code(uploads.append(id, 0, body('x')))).toBe(ErrorCode.NotFound);
      expect(await code(uploads.read(id))).toBe(ErrorCode.NotFound);
      expect(await code(uploads.commit(id, digest))).toBe(ErrorCode.NotFound);
      expect(await uploads.cancel(id)).toBe(false);
    }
  });
});

/**
 * interfering is memory storage where another party (a second replica on
 * the same bucket, say) cancels the session just before the registry's
 * next `append` or `commit` call on it.
 */
function interfering(call: 'append' | 'commit'): RegistryStorage {
  const storage = memoryStorage();
  const uploads = uploadsOf(storage);
  if (call === 'append') {
    const append = uploads.append.bind(uploads);
    uploads.append = async (id, offset, data) => {
      await uploads.cancel(id);
      return append(id, offset, data);
    };
  } else {
    const commit = uploads.commit.bind(uploads);
    uploads.commit = async (id, digest) => {
      await uploads.cancel(id);
      return commit(id, digest);
    };
  }
  return storage;
}

describe('the registry under the storage error contract', () => {
  const registries: Registry[] = [];
  afterAll(async () => {
    for (const r of registries) await r.close();
  });

  async function serve(storage: RegistryStorage): Promise<string> {
    const r = createRegistry({ storage });
    registries.push(r);
    return (await r.listen()).url;
  }

  async function open(base: string): Promise<string> {
    const r = await req('POST', `${base}/v2/lib/app/blobs/uploads/`);
    expect(r.status).toBe(202);
    return new URL(String(r.headers.location), base).toString();
  }

  it('answers 404 BLOB_UPLOAD_UNKNOWN when the session vanishes before the commit', async () => {
    const base = await serve(interfering('commit'));
    const location = await open(base);
    const r = await req('PUT', `${location}?digest=${sha256('abc')}`, { body: 'abc' });
    expect(r.status).toBe(404);
    expect(r.code()).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  it('answers 404 BLOB_UPLOAD_UNKNOWN when the session vanishes before an append', async () => {
    const base = await serve(interfering('append'));
    const location = await open(base);
    const r = await req('PATCH', location, { body: 'abc' });
    expect(r.status).toBe(404);
    expect(r.code()).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  it('answers 500 UNKNOWN, not an upload error, for NOT_FOUND from any other storage call', async () => {
    const storage = memoryStorage();
    storage.metadata.listTags = () =>
      Promise.reject(new LadingError(ErrorCode.NotFound, 'tags dir vanished'));
    const base = await serve(storage);
    const location = await open(base);
    expect((await req('PUT', `${location}?digest=${sha256('x')}`, { body: 'x' })).status).toBe(201);
    const r = await req('GET', `${base}/v2/lib/app/tags/list`);
    expect(r.status).toBe(500);
    expect(r.code()).toBe('UNKNOWN');
  });
});
