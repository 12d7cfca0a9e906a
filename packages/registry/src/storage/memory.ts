import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { ErrorCode, LadingError, type Descriptor, type Digest } from '@lading/core';
import { unknownUpload } from '../names.js';
import type {
  BlobReadOptions,
  BlobStat,
  BlobStore,
  ManifestRecord,
  MetadataStore,
  RegistryStorage,
  StoredManifest,
  UploadInfo,
  UploadSession,
  UploadStatus,
  UploadStore,
} from './types.js';

function sliceRange(bytes: Buffer, options?: BlobReadOptions): Buffer {
  const start = options?.start ?? 0;
  const end = options?.end ?? bytes.length - 1;
  return bytes.subarray(start, end + 1);
}

/** MemoryBlobStore keeps blobs in a Map. */
class MemoryBlobStore implements BlobStore {
  readonly #blobs = new Map<Digest, Buffer>();

  stat(digest: Digest): Promise<BlobStat | undefined> {
    const b = this.#blobs.get(digest);
    return Promise.resolve(b === undefined ? undefined : { size: b.length });
  }

  get(digest: Digest, options?: BlobReadOptions): Promise<Readable | undefined> {
    const b = this.#blobs.get(digest);
    return Promise.resolve(b === undefined ? undefined : Readable.from([sliceRange(b, options)]));
  }

  delete(digest: Digest): Promise<boolean> {
    return Promise.resolve(this.#blobs.delete(digest));
  }

  /** put stores a verified blob (used by the upload store). */
  put(digest: Digest, bytes: Buffer): void {
    this.#blobs.set(digest, bytes);
  }
}

interface MemoryUpload {
  repository: string;
  chunks: Buffer[];
  size: number;
  updatedAt: number;
}

/** MemoryUploadStore keeps uploads as lists of chunks. */
class MemoryUploadStore implements UploadStore {
  readonly #uploads = new Map<string, MemoryUpload>();
  readonly #blobs: MemoryBlobStore;

  constructor(blobs: MemoryBlobStore) {
    this.#blobs = blobs;
  }

  create(repository: string): Promise<UploadSession> {
    const id = randomUUID();
    this.#uploads.set(id, { repository, chunks: [], size: 0, updatedAt: Date.now() });
    return Promise.resolve({ id });
  }

  status(id: string): Promise<UploadStatus | undefined> {
    const u = this.#uploads.get(id);
    return Promise.resolve(
      u === undefined
        ? undefined
        : { repository: u.repository, size: u.size, updatedAt: u.updatedAt },
    );
  }

  async *list(): AsyncIterable<UploadInfo> {
    // A snapshot: sessions may come and go while the caller awaits.
    const all = [...this.#uploads].map(([id, u]) => ({
      id,
      repository: u.repository,
      size: u.size,
      updatedAt: u.updatedAt,
    }));
    yield* all;
    await Promise.resolve();
  }

  async append(id: string, offset: number, data: Readable): Promise<number> {
    const u = this.#uploads.get(id);
    if (u === undefined) {
      data.destroy();
      throw unknownUpload(id);
    }
    if (offset !== u.size) {
      data.destroy();
      throw new LadingError(ErrorCode.Conflict, `upload ${id} is at ${u.size}, not ${offset}`);
    }
    for await (const chunk of data as AsyncIterable<Buffer>) {
      u.chunks.push(chunk);
      u.size += chunk.length;
      u.updatedAt = Date.now();
    }
    return u.size;
  }

  async read(id: string): Promise<Readable> {
    return Readable.from((await this.#get(id)).chunks);
  }

  async commit(id: string, digest: Digest): Promise<void> {
    const u = await this.#get(id);
    this.#blobs.put(digest, Buffer.concat(u.chunks));
    this.#uploads.delete(id);
  }

  cancel(id: string): Promise<boolean> {
    return Promise.resolve(this.#uploads.delete(id));
  }

  // A promise, so that an unknown session rejects (the storage contract) and never throws synchronously.
  #get(id: string): Promise<MemoryUpload> {
    const u = this.#uploads.get(id);
    return u === undefined ? Promise.reject(unknownUpload(id)) : Promise.resolve(u);
  }
}

interface MemoryRepository {
  manifests: Map<Digest, ManifestRecord>;
  tags: Map<string, Digest>;
  blobs: Set<Digest>;
}

/** MemoryMetadataStore keeps repositories in Maps. */
class MemoryMetadataStore implements MetadataStore {
  readonly #repos = new Map<string, MemoryRepository>();

  #repo(name: string): MemoryRepository | undefined {
    return this.#repos.get(name);
  }

  #ensure(name: string): MemoryRepository {
    let r = this.#repos.get(name);
    if (r === undefined) {
      r = { manifests: new Map(), tags: new Map(), blobs: new Set() };
      this.#repos.set(name, r);
    }
    return r;
  }

  repositoryExists(repository: string): Promise<boolean> {
    return Promise.resolve(this.#repos.has(repository));
  }

  listRepositories(): Promise<string[]> {
    return Promise.resolve([...this.#repos.keys()].sort());
  }

  getManifest(repository: string, digest: Digest): Promise<StoredManifest | undefined> {
    const m = this.#repo(repository)?.manifests.get(digest);
    return Promise.resolve(
      m === undefined ? undefined : { bytes: m.bytes, mediaType: m.mediaType },
    );
  }

  resolveTag(repository: string, tag: string): Promise<Digest | undefined> {
    return Promise.resolve(this.#repo(repository)?.tags.get(tag));
  }

  listTags(repository: string): Promise<string[]> {
    return Promise.resolve([...(this.#repo(repository)?.tags.keys() ?? [])].sort());
  }

  hasBlob(repository: string, digest: Digest): Promise<boolean> {
    return Promise.resolve(this.#repo(repository)?.blobs.has(digest) === true);
  }

  referrers(repository: string, subject: Digest): Promise<Descriptor[]> {
    const out: Descriptor[] = [];
    for (const m of this.#repo(repository)?.manifests.values() ?? []) {
      if (m.subject === subject) out.push(m.referrer);
    }
    return Promise.resolve(out);
  }

  putManifest(repository: string, record: ManifestRecord): Promise<void> {
    this.#ensure(repository).manifests.set(record.digest, record);
    return Promise.resolve();
  }

  putTag(repository: string, tag: string, digest: Digest): Promise<void> {
    this.#ensure(repository).tags.set(tag, digest);
    return Promise.resolve();
  }

  deleteManifest(repository: string, digest: Digest): Promise<boolean> {
    const r = this.#repo(repository);
    if (r?.manifests.delete(digest) !== true) return Promise.resolve(false);
    for (const [tag, d] of r.tags) if (d === digest) r.tags.delete(tag);
    return Promise.resolve(true);
  }

  deleteTag(repository: string, tag: string): Promise<boolean> {
    return Promise.resolve(this.#repo(repository)?.tags.delete(tag) === true);
  }

  linkBlob(repository: string, digest: Digest): Promise<void> {
    this.#ensure(repository).blobs.add(digest);
    return Promise.resolve();
  }

  unlinkBlob(repository: string, digest: Digest): Promise<boolean> {
    return Promise.resolve(this.#repo(repository)?.blobs.delete(digest) === true);
  }
}

/**
 * memoryStorage is a registry storage held entirely in memory: for tests
 * and throwaway registries (every blob sits in the heap).
 */
export function memoryStorage(): RegistryStorage {
  const blobs = new MemoryBlobStore();
  return { blobs, uploads: new MemoryUploadStore(blobs), metadata: new MemoryMetadataStore() };
}
