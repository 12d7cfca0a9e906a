import type { Readable } from 'node:stream';
import { S3Client } from '@aws-sdk/client-s3';
import {
  digestAlgorithm,
  digestHex,
  ErrorCode,
  isDigest,
  LadingError,
  type Descriptor,
  type Digest,
} from '@lading/core';
import { isRepositoryName, isTag } from '../names.js';
import { Bucket } from './s3-bucket.js';
import { S3UploadStore, type SweepOptions } from './s3-uploads.js';
import type {
  BlobReadOptions,
  BlobStat,
  BlobStore,
  ManifestRecord,
  MetadataStore,
  RegistryStorage,
  StorageOptions,
  StoredManifest,
} from './types.js';

/** S3Credentials are static S3 access keys. */
export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string | undefined;
}

/** S3StorageOptions configure {@link s3Storage}. */
export interface S3StorageOptions {
  /** bucket must exist. */
  readonly bucket: string;
  /** prefix is prepended to every key (default: none), so one bucket can hold several registries. */
  readonly prefix?: string | undefined;
  /** endpoint of an S3-compatible store (`http://127.0.0.1:9000`); default: AWS from the environment. */
  readonly endpoint?: string | undefined;
  /** region (default `AWS_REGION` or us-east-1). */
  readonly region?: string | undefined;
  /** forcePathStyle addresses `endpoint/bucket/key` instead of `bucket.endpoint/key`. */
  readonly forcePathStyle?: boolean | undefined;
  /** credentials (default: the SDK's chain, e.g. `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`). */
  readonly credentials?: S3Credentials | undefined;
  /**
   * redirect answers blob GETs with a 307 to a presigned object URL, so blob
   * bytes do not flow through the registry (default true). The object store
   * must then be reachable by the registry's clients at `endpoint`.
   */
  readonly redirect?: boolean | undefined;
  /** redirectExpiresIn is the presigned URL lifetime in seconds (default 900). */
  readonly redirectExpiresIn?: number | undefined;
  /**
   * partSize is the multipart part size in bytes (default 8 MiB, at least
   * 5 MiB); a blob can be at most 10,000 parts long (78 GiB at the default).
   */
  readonly partSize?: number | undefined;
  /**
   * partConcurrency is how many parts of one request upload at once
   * (default 2): an append holds at most partConcurrency + 1 parts in memory.
   */
  readonly partConcurrency?: number | undefined;
  /**
   * maxCopySize is the largest object copied with one CopyObject (default
   * 5 GiB, S3's limit); larger blobs are copied in UploadPartCopy parts of
   * at most this size.
   */
  readonly maxCopySize?: number | undefined;
  /** client replaces the S3 client built from the options above (endpoint, region... are then ignored). */
  readonly client?: S3Client | undefined;
}

/** S3Storage is a {@link RegistryStorage} on an S3 bucket. */
export interface S3Storage extends RegistryStorage {
  readonly uploads: S3UploadStore;
  /**
   * sweep aborts multipart uploads under the prefix that no session owns
   * any more (left by a process killed at the wrong moment) once they are
   * older than `olderThan` seconds (default 86400), and answers how many.
   */
  sweep(options?: SweepOptions): Promise<number>;
  /** close releases the S3 client's sockets (not when `client` was given). */
  close(): void;
}

const minPartSize = 5 * 1024 * 1024;
const maxManifestObject = 8 * 1024 * 1024;
const maxSmallObject = 64 * 1024;

function digestPath(dir: string, digest: Digest): string {
  return `${dir}/${digestAlgorithm(digest)}/${digestHex(digest)}`;
}

/** S3BlobStore keeps blobs at `blobs/<algorithm>/<hex>`. */
class S3BlobStore implements BlobStore {
  readonly #bucket: Bucket;
  readonly #redirect: boolean;
  readonly #expiresIn: number;

  constructor(bucket: Bucket, redirect: boolean, expiresIn: number) {
    this.#bucket = bucket;
    this.#redirect = redirect;
    this.#expiresIn = expiresIn;
  }

  async stat(digest: Digest, options?: StorageOptions): Promise<BlobStat | undefined> {
    const h = await this.#bucket.head(digestPath('blobs', digest), options?.signal);
    return h === undefined ? undefined : { size: h.size };
  }

  get(digest: Digest, options?: BlobReadOptions): Promise<Readable | undefined> {
    const range =
      options?.start === undefined && options?.end === undefined
        ? undefined
        : { start: options.start ?? 0, end: options.end };
    return this.#bucket.stream(digestPath('blobs', digest), range, options?.signal);
  }

  async delete(digest: Digest, options?: StorageOptions): Promise<boolean> {
    const path = digestPath('blobs', digest);
    if ((await this.#bucket.head(path, options?.signal)) === undefined) return false;
    await this.#bucket.delete(path, options?.signal);
    return true;
  }

  async location(digest: Digest): Promise<string | undefined> {
    if (!this.#redirect) return undefined;
    return this.#bucket.presign(digestPath('blobs', digest), this.#expiresIn);
  }
}

/**
 * S3MetadataStore keeps each repository under `repositories/<name>/` with
 * `_manifests/`, `_tags/`, `_links/` and `_referrers/` objects, the layout
 * of the filesystem storage (repository name components never start with `_`).
 */
class S3MetadataStore implements MetadataStore {
  readonly #bucket: Bucket;
  constructor(bucket: Bucket) {
    this.#bucket = bucket;
  }

  #repo(name: string): string {
    if (!isRepositoryName(name)) {
      throw new LadingError(ErrorCode.InvalidArgument, `invalid repository name ${name}`);
    }
    return `repositories/${name}`;
  }

  #manifestPath(repository: string, digest: Digest): string {
    return digestPath(`${this.#repo(repository)}/_manifests`, digest);
  }

  #tagPath(repository: string, tag: string): string {
    if (!isTag(tag)) throw new LadingError(ErrorCode.InvalidArgument, `invalid tag ${tag}`);
    return `${this.#repo(repository)}/_tags/${tag}`;
  }

  #linkPath(repository: string, digest: Digest): string {
    return digestPath(`${this.#repo(repository)}/_links`, digest);
  }

  #referrerDir(repository: string, subject: Digest): string {
    return `${this.#repo(repository)}/_referrers/${digestAlgorithm(subject)}-${digestHex(subject)}/`;
  }

  async #keys(dir: string, signal?: AbortSignal): Promise<string[]> {
    const out: string[] = [];
    for await (const page of this.#bucket.list(dir, false, signal)) out.push(...page.keys);
    return out;
  }

  repositoryExists(repository: string, options?: StorageOptions): Promise<boolean> {
    return this.#bucket.any(`${this.#repo(repository)}/_`, options?.signal);
  }

  async listRepositories(options?: StorageOptions): Promise<string[]> {
    const out: string[] = [];
    // One delimited listing per level: a level holding `_…/` is a repository.
    const walk = async (name: string): Promise<void> => {
      const children: string[] = [];
      for await (const page of this.#bucket.list(
        name === '' ? 'repositories/' : `repositories/${name}/`,
        true,
        options?.signal,
      )) {
        children.push(...page.prefixes.map((p) => p.slice(0, -1)));
      }
      if (name !== '' && children.some((c) => c.startsWith('_'))) out.push(name);
      for (const c of children) {
        if (!c.startsWith('_')) await walk(name === '' ? c : `${name}/${c}`);
      }
    };
    await walk('');
    return out.sort();
  }

  async getManifest(
    repository: string,
    digest: Digest,
    options?: StorageOptions,
  ): Promise<StoredManifest | undefined> {
    const got = await this.#bucket.object(
      this.#manifestPath(repository, digest),
      maxManifestObject,
      options?.signal,
    );
    if (got === undefined) return undefined;
    return {
      bytes: got.bytes,
      mediaType: got.metadata['media-type'] ?? 'application/octet-stream',
    };
  }

  async resolveTag(
    repository: string,
    tag: string,
    options?: StorageOptions,
  ): Promise<Digest | undefined> {
    const bytes = await this.#bucket.bytes(
      this.#tagPath(repository, tag),
      maxSmallObject,
      options?.signal,
    );
    const text = bytes?.toString('utf8').trim();
    return text !== undefined && isDigest(text) ? text : undefined;
  }

  async listTags(repository: string, options?: StorageOptions): Promise<string[]> {
    const keys = await this.#keys(`${this.#repo(repository)}/_tags/`, options?.signal);
    return keys.filter(isTag).sort();
  }

  async hasBlob(repository: string, digest: Digest, options?: StorageOptions): Promise<boolean> {
    return (
      (await this.#bucket.head(this.#linkPath(repository, digest), options?.signal)) !== undefined
    );
  }

  async referrers(
    repository: string,
    subject: Digest,
    options?: StorageOptions,
  ): Promise<Descriptor[]> {
    const dir = this.#referrerDir(repository, subject);
    const out: Descriptor[] = [];
    for (const key of await this.#keys(dir, options?.signal)) {
      const bytes = await this.#bucket.bytes(dir + key, maxSmallObject, options?.signal);
      if (bytes !== undefined) out.push(JSON.parse(bytes.toString('utf8')) as Descriptor);
    }
    return out;
  }

  async putManifest(
    repository: string,
    record: ManifestRecord,
    options?: StorageOptions,
  ): Promise<void> {
    const meta: Record<string, string> = { 'media-type': record.mediaType };
    if (record.subject !== undefined) meta.subject = record.subject;
    // The referrers entry first: a manifest is never visible without it.
    if (record.subject !== undefined) {
      await this.#bucket.put(
        this.#referrerDir(repository, record.subject) +
          `${digestAlgorithm(record.digest)}-${digestHex(record.digest)}`,
        JSON.stringify(record.referrer),
        undefined,
        options?.signal,
      );
    }
    await this.#bucket.put(
      this.#manifestPath(repository, record.digest),
      record.bytes,
      meta,
      options?.signal,
    );
  }

  async putTag(
    repository: string,
    tag: string,
    digest: Digest,
    options?: StorageOptions,
  ): Promise<void> {
    await this.#bucket.put(this.#tagPath(repository, tag), digest, undefined, options?.signal);
  }

  async deleteManifest(
    repository: string,
    digest: Digest,
    options?: StorageOptions,
  ): Promise<boolean> {
    const signal = options?.signal;
    const path = this.#manifestPath(repository, digest);
    const head = await this.#bucket.head(path, signal);
    if (head === undefined) return false;
    for (const tag of await this.listTags(repository, options)) {
      if ((await this.resolveTag(repository, tag, options)) === digest) {
        await this.#bucket.delete(this.#tagPath(repository, tag), signal);
      }
    }
    await this.#bucket.delete(path, signal);
    const subject = head.metadata.subject;
    if (subject !== undefined && isDigest(subject)) {
      await this.#bucket.delete(
        this.#referrerDir(repository, subject) + `${digestAlgorithm(digest)}-${digestHex(digest)}`,
        signal,
      );
    }
    return true;
  }

  async deleteTag(repository: string, tag: string, options?: StorageOptions): Promise<boolean> {
    const path = this.#tagPath(repository, tag);
    if ((await this.#bucket.head(path, options?.signal)) === undefined) return false;
    await this.#bucket.delete(path, options?.signal);
    return true;
  }

  async linkBlob(repository: string, digest: Digest, options?: StorageOptions): Promise<void> {
    await this.#bucket.put(this.#linkPath(repository, digest), '', undefined, options?.signal);
  }

  async unlinkBlob(repository: string, digest: Digest, options?: StorageOptions): Promise<boolean> {
    const path = this.#linkPath(repository, digest);
    if ((await this.#bucket.head(path, options?.signal)) === undefined) return false;
    await this.#bucket.delete(path, options?.signal);
    return true;
  }
}

/**
 * s3Storage keeps a registry in an S3 bucket (or any S3-compatible store):
 * blobs as content-addressed objects, manifests, tags, links and referrers
 * as small objects, uploads as multipart uploads with their state in the
 * bucket. No state lives in the process, so any number of registries over
 * the same bucket and prefix serve the same content and may each receive
 * any chunk of an upload.
 * @throws LadingError INVALID_ARGUMENT on a bad bucket or part size
 */
export function s3Storage(options: S3StorageOptions): S3Storage {
  if (options.bucket === '' || options.bucket.includes('/')) {
    throw new LadingError(ErrorCode.InvalidArgument, `invalid S3 bucket name ${options.bucket}`);
  }
  const partSize = options.partSize ?? 8 * 1024 * 1024;
  if (!Number.isInteger(partSize) || partSize < minPartSize) {
    throw new LadingError(ErrorCode.InvalidArgument, `S3 part size must be at least 5 MiB`);
  }
  const client =
    options.client ??
    new S3Client({
      endpoint: options.endpoint,
      region: options.region ?? process.env.AWS_REGION ?? 'us-east-1',
      forcePathStyle: options.forcePathStyle,
      credentials: options.credentials,
      // Plain signed payloads: no aws-chunked trailers, which some S3-compatible stores refuse.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  const bucket = new Bucket(client, options.bucket, options.prefix ?? '');
  const uploads = new S3UploadStore(bucket, {
    partSize,
    partConcurrency: options.partConcurrency,
    maxCopySize: options.maxCopySize,
  });
  return {
    blobs: new S3BlobStore(bucket, options.redirect ?? true, options.redirectExpiresIn ?? 900),
    uploads,
    metadata: new S3MetadataStore(bucket),
    sweep: (o) => uploads.sweep(o),
    close: () => {
      if (options.client === undefined) client.destroy();
    },
  };
}
