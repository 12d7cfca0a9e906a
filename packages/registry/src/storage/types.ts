import type { Readable } from 'node:stream';
import type { Descriptor, Digest } from '@lading/core';

/*
 * The storage error contract. Every storage method reports failure by
 * rejecting; the registry branches on the `code` of a LadingError
 * (`isLadingError(err, code)`) and on nothing else:
 *
 * - Something absent is an answer, not an error, wherever the method says
 *   so (undefined, false or an empty list): a missing blob, manifest, tag,
 *   repository or upload session.
 * - NOT_FOUND is thrown only by the {@link UploadStore} methods that need
 *   an existing session (append, read, commit), and means exactly "no such
 *   upload session": the registry answers 404 BLOB_UPLOAD_UNKNOWN. From any
 *   other method it is a store failure like any other.
 * - CONFLICT is thrown only by {@link UploadStore.append}, when `offset` is
 *   not the session's size (or another writer recorded an append meanwhile):
 *   the registry answers 416 with the session's Range; and by
 *   {@link UploadStore.commit}, when the session was written since this
 *   process last appended to it or read it (a store several processes share
 *   must say so): the registry then reads the bytes back and verifies them
 *   before it commits again.
 * - A call whose `options.signal` aborts rejects with what the store
 *   meets (ABORTED from S3 storage, Node's AbortError from the file system).
 * - Anything else (IO, INVALID_ARGUMENT, a plain Error) is a failure of the
 *   store: the registry answers 500 UNKNOWN, except while it is appending a
 *   request body, where it answers 400 BLOB_UPLOAD_INVALID (the body or the
 *   store failed mid-chunk; status() tells what was kept).
 *
 * test/storage-contract.test.ts holds memory, filesystem and S3 storage to it.
 */

/** StorageOptions are what every storage call accepts. */
export interface StorageOptions {
  readonly signal?: AbortSignal | undefined;
}

/** BlobReadOptions select an inclusive byte range of a blob. */
export interface BlobReadOptions extends StorageOptions {
  /** start is the first byte to read (default 0). */
  readonly start?: number | undefined;
  /** end is the last byte to read, inclusive (default: the last byte). */
  readonly end?: number | undefined;
}

/** BlobStat is what a blob store knows about a stored blob. */
export interface BlobStat {
  readonly size: number;
}

/**
 * BlobFile is an open blob that its reader reads into buffers of its own
 * (a `FileHandle` is one).
 */
export interface BlobFile {
  /** read reads up to `length` bytes at `position` into `buffer` at `offset`. */
  read(
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}

/**
 * BlobStore holds content-addressed blobs, shared by every repository (the
 * registry decides per repository which blobs are visible, through the
 * metadata store's links). The registry verifies digests and sizes itself,
 * so a store never has to hash.
 */
export interface BlobStore {
  /** stat answers the size of a blob, or undefined when it is absent (never NOT_FOUND). */
  stat(digest: Digest, options?: StorageOptions): Promise<BlobStat | undefined>;
  /**
   * get streams a blob (or the asked range), or undefined when it is absent
   * (never NOT_FOUND).
   */
  get(digest: Digest, options?: BlobReadOptions): Promise<Readable | undefined>;
  /** delete removes a blob, false when it was absent; absent on stores that never delete. */
  delete?(digest: Digest, options?: StorageOptions): Promise<boolean>;
  /**
   * location answers "this blob lives at this URL" (a pre-signed object
   * storage URL, say): the registry then answers blob GETs with a 307 to it.
   * Undefined means "serve it through the registry".
   */
  location?(digest: Digest, options?: StorageOptions): Promise<string | undefined>;
  /**
   * open answers a blob as a file to read from, or undefined when it is
   * absent (never NOT_FOUND). Optional: a store on a local file system
   * offers it, and the registry then sends blobs through two buffers it
   * reuses instead of a fresh buffer per read (less server CPU per byte).
   */
  open?(digest: Digest, options?: StorageOptions): Promise<BlobFile | undefined>;
}

/** UploadSession is a freshly created upload. */
export interface UploadSession {
  /** id is the session identifier (a UUID) used in `/v2/<name>/blobs/uploads/<id>`. */
  readonly id: string;
  /**
   * location is an absolute URL on another origin where the client sends the
   * bytes (PATCH/PUT) instead of the registry. Undefined: the registry itself.
   */
  readonly location?: string | undefined;
}

/** UploadCreateOptions are passed to {@link UploadStore.create}. */
export interface UploadCreateOptions extends StorageOptions {
  /**
   * origin is the registry's absolute origin as the client sees it
   * (`http://host:port`): an external upload location uses it to send the
   * client back to `/v2/<name>/blobs/uploads/<id>` to close the session.
   */
  readonly origin?: string | undefined;
}

/** CompletionResponse is the HTTP answer to closing an upload. */
export interface CompletionResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/**
 * RegistryHooks are what a registry offers its upload store: `complete`
 * verifies and commits an upload exactly as the closing `PUT ?digest=` does
 * (an external upload location that receives the closing PUT calls it).
 */
export interface RegistryHooks {
  complete(id: string, digest: string, options?: StorageOptions): Promise<CompletionResponse>;
}

/** UploadStatus is the state of an upload session. */
export interface UploadStatus {
  readonly repository: string;
  /** size is the number of bytes received so far. */
  readonly size: number;
  /**
   * updatedAt is when the session was created or last received bytes
   * (milliseconds since the epoch), when the store knows it. The registry's
   * idle expiry uses it, so it must survive a restart of the process.
   */
  readonly updatedAt?: number | undefined;
}

/** AppendOptions are what {@link UploadStore.append} accepts. */
export interface AppendOptions extends StorageOptions {
  /**
   * refreshEvery asks a store that records `updatedAt` to refresh it at
   * least this often (ms) while the append runs, so that the idle expiry of
   * other processes sharing the store leaves a session being written alone.
   */
  readonly refreshEvery?: number | undefined;
}

/** UploadInfo describes one open upload session (see {@link UploadStore.list}). */
export interface UploadInfo extends UploadStatus {
  readonly id: string;
}

/**
 * UploadStore holds in-progress uploads. Bytes are appended in order; the
 * registry hashes them as they flow and, on the closing PUT, checks digest
 * and size before it calls {@link UploadStore.commit}.
 */
export interface UploadStore {
  /** create opens a session for `repository`. */
  create(repository: string, options?: UploadCreateOptions): Promise<UploadSession>;
  /**
   * status answers the session's state, or undefined when it is unknown
   * (also for an id the store could never have made; never NOT_FOUND).
   */
  status(id: string, options?: StorageOptions): Promise<UploadStatus | undefined>;
  /**
   * append writes `data` at `offset`, which must equal the current size,
   * and resolves with the new size. When `data` fails midway the bytes
   * already written may stay; status() tells how many. It consumes or
   * destroys `data` in every case.
   * @throws LadingError NOT_FOUND when the session is unknown (or was cancelled meanwhile); CONFLICT when `offset` is not its size
   */
  append(id: string, offset: number, data: Readable, options?: AppendOptions): Promise<number>;
  /**
   * read streams every byte received so far (used to verify after a restart).
   * @throws LadingError NOT_FOUND (a rejection, not a stream error) when the session is unknown
   */
  read(id: string, options?: StorageOptions): Promise<Readable>;
  /**
   * commit turns the (already verified) upload into the blob `digest` and
   * ends the session. The bytes it commits must be the ones this process
   * verified: those its own appends wrote, or those its last read()
   * streamed. A store that other processes write too throws CONFLICT when
   * the session changed since then.
   * @throws LadingError NOT_FOUND when the session is unknown; CONFLICT (see above)
   */
  commit(id: string, digest: Digest, options?: StorageOptions): Promise<void>;
  /** cancel drops a session; resolves false when it was unknown (never NOT_FOUND). */
  cancel(id: string, options?: StorageOptions): Promise<boolean>;
  /** bindRegistry is called once by createRegistry with hooks into the registry. */
  bindRegistry?(hooks: RegistryHooks): void;
  /**
   * list answers every open session, including those opened by another
   * process or before a restart: the registry's timer-driven expiry and its
   * session-count bounds use it. Stores without it only expire the sessions
   * this process has seen.
   */
  list?(options?: StorageOptions): AsyncIterable<UploadInfo>;
}

/** StoredManifest is a manifest exactly as pushed. */
export interface StoredManifest {
  readonly bytes: Buffer;
  readonly mediaType: string;
}

/** ManifestRecord is what the registry hands the metadata store on a manifest PUT. */
export interface ManifestRecord extends StoredManifest {
  readonly digest: Digest;
  /** subject is the digest of the manifest's `subject`, when it has one. */
  readonly subject?: Digest | undefined;
  /** referrer is the descriptor the referrers API lists for this manifest (with artifactType and annotations). */
  readonly referrer: Descriptor;
}

/**
 * MetadataStore holds, per repository, manifests, tags, the referrers index
 * and the links that make blobs visible in a repository. Without the
 * optional write methods the registry is read-only. Its reads answer
 * undefined, false or an empty list for what is absent, an unknown
 * repository included, and none of its methods throws NOT_FOUND (see the
 * storage error contract above); the registry checks repository names and
 * tags before it calls them.
 */
export interface MetadataStore {
  /** repositoryExists tells whether anything (manifest, tag or blob link) lives in `repository`. */
  repositoryExists(repository: string, options?: StorageOptions): Promise<boolean>;
  /** listRepositories answers every repository name, sorted. */
  listRepositories(options?: StorageOptions): Promise<string[]>;
  /** getManifest answers a manifest of `repository`, or undefined when it has none with `digest`. */
  getManifest(
    repository: string,
    digest: Digest,
    options?: StorageOptions,
  ): Promise<StoredManifest | undefined>;
  /** resolveTag answers the digest `tag` points at, or undefined when there is no such tag. */
  resolveTag(
    repository: string,
    tag: string,
    options?: StorageOptions,
  ): Promise<Digest | undefined>;
  /** listTags answers every tag of `repository`, sorted. */
  listTags(repository: string, options?: StorageOptions): Promise<string[]>;
  /** hasBlob tells whether `digest` is linked into `repository`. */
  hasBlob(repository: string, digest: Digest, options?: StorageOptions): Promise<boolean>;
  /** referrers answers the descriptors of manifests in `repository` whose subject is `subject`. */
  referrers(repository: string, subject: Digest, options?: StorageOptions): Promise<Descriptor[]>;

  putManifest?(repository: string, record: ManifestRecord, options?: StorageOptions): Promise<void>;
  putTag?(repository: string, tag: string, digest: Digest, options?: StorageOptions): Promise<void>;
  /**
   * deleteManifest removes a manifest, the tags pointing at it and its
   * referrers entry; false when there was none.
   */
  deleteManifest?(repository: string, digest: Digest, options?: StorageOptions): Promise<boolean>;
  /** deleteTag removes a tag; false when there was none. */
  deleteTag?(repository: string, tag: string, options?: StorageOptions): Promise<boolean>;
  linkBlob?(repository: string, digest: Digest, options?: StorageOptions): Promise<void>;
  /** unlinkBlob removes the link of `digest` from `repository`; false when there was none. */
  unlinkBlob?(repository: string, digest: Digest, options?: StorageOptions): Promise<boolean>;
}

/**
 * RegistryStorage is everything a registry stores. Leave `uploads` out (or
 * the metadata write methods) for a read-only registry.
 */
export interface RegistryStorage {
  readonly blobs: BlobStore;
  readonly uploads?: UploadStore | undefined;
  readonly metadata: MetadataStore;
}
