import {
  ProgressEmitter,
  isImageIndex,
  parseReference,
  type Digest,
  type Image,
  type ImageIndex,
  type MediaTypeString,
  type Reference,
} from '@lading/core';
import { childrenToWrite, deferred } from '@lading/core/internal';
import { RegistryClient, type RemoteOptions } from './client.js';
import { Pusher, manifestReference, type Placement } from './pusher.js';
import { sessionOf } from './session.js';
import type { UploadMode, BlobUpload } from './upload.js';

/** WriteOptions configure {@link write}, {@link writeIndex} and {@link checkPushPermission}. */
export interface WriteOptions extends RemoteOptions {
  /** jobs bounds concurrent layer uploads (default 4). */
  readonly jobs?: number;
  /**
   * uploadMode: `stream` (one chunked PATCH, then PUT), `chunked` or
   * `monolithic` (needs a known descriptor). Unset: monolithic for layers
   * whose descriptor is known and at most 1 MiB, stream otherwise.
   */
  readonly uploadMode?: UploadMode;
  /** chunkSize of `chunked` uploads (raised to the registry's OCI-Chunk-Min-Length). */
  readonly chunkSize?: number;
}

/** WriteResult is what {@link write} stored. */
export type WriteResult = {
  readonly digest: Digest;
  readonly size: number;
  readonly mediaType: MediaTypeString;
  /** reference is `registry/repository@digest`. */
  readonly reference: string;
};

/**
 * PushHandle is a running {@link write}: `authorized` settles as soon as the
 * registry accepted (or refused) the first upload session, `done` when the
 * manifest is stored; progress events arrive through `on('progress', …)`.
 * Both promises are marked handled: not awaiting them never crashes.
 */
export class PushHandle extends ProgressEmitter {
  /** authorized resolves when the registry accepted an upload session. @throws UNAUTHORIZED, DENIED */
  readonly authorized: Promise<void>;
  /** done resolves when the manifest is stored. */
  readonly done: Promise<WriteResult>;

  /** @internal */
  constructor(authorized: Promise<void>, done: (self: PushHandle) => Promise<WriteResult>) {
    super();
    this.authorized = authorized;
    this.done = done(this);
    this.done.catch(() => undefined);
  }
}

function toRef(ref: string | Reference): Reference {
  return typeof ref === 'string' ? parseReference(ref) : ref;
}

/** inSession gives a call tree its session: the caller's, or a new one for this call. */
function inSession<T extends RemoteOptions>(options: T): T {
  return options.session === undefined ? { ...options, session: sessionOf(options) } : options;
}

/**
 * write pushes an image lazily (docs/design.md, write()). Right away it pings `/v2/`,
 * gets push-scope credentials and opens upload sessions — one for the
 * config, one per layer whose descriptor is unknown, and, for layers whose
 * descriptor is known, only when `HEAD` says the blob is missing and a
 * cross-repository mount (when `layer.source` names another repository of
 * this registry) did not link it. `authorized` settles on the first session
 * while the layers have produced zero bytes. Layers then upload
 * concurrently (`jobs`), each in one pass; the config as soon as every
 * layer has been read (its diffIds known), beside the layers' last
 * requests; the manifest once every blob is stored. On any failure or abort, open
 * sessions are cancelled with DELETE and no manifest is written.
 * @throws (through `done`) UNAUTHORIZED, DENIED, NETWORK, UPLOAD_FAILED, DIGEST_MISMATCH, ABORTED
 */
export function write(
  ref: string | Reference,
  image: Image,
  options: WriteOptions = {},
): PushHandle {
  return startWrite(toRef(ref), image, inSession(options), 'tagged');
}

function startWrite(
  ref: Reference,
  image: Image,
  options: WriteOptions,
  placement: Placement,
): PushHandle {
  const authorized = deferred<undefined>();
  return new PushHandle(authorized.promise, async (handle) => {
    const pushed = await new Pusher(ref, image, options, placement, authorized, handle).run();
    return { ...pushed, reference: `${ref.name}@${pushed.digest}` };
  });
}

/**
 * writeIndex pushes a multi-platform index: every child (images through
 * {@link write}, nested indexes recursively) by digest first, the index
 * manifest last under the reference's tag.
 * @throws as {@link write}
 */
export function writeIndex(
  ref: string | Reference,
  index: ImageIndex,
  options: WriteOptions = {},
): PushHandle {
  return startWriteIndex(toRef(ref), index, inSession(options), 'tagged');
}

function startWriteIndex(
  r: Reference,
  index: ImageIndex,
  options: WriteOptions,
  placement: Placement,
): PushHandle {
  const auth = deferred<undefined>();
  return new PushHandle(auth.promise, async (handle) => {
    try {
      // Children are pushed by digest (no tag); for indexes built in-process
      // they come undescribed, so stream layers get their digests by uploading.
      const children = await childrenToWrite(index);
      const childRef = parseReference(r.name);
      for (const child of children) {
        // Children share this call's session (one ping, one token per scope).
        const push = isImageIndex(child)
          ? startWriteIndex(childRef, child, options, 'byDigest')
          : startWrite(childRef, child, options, 'byDigest');
        push.on('progress', (e) => {
          handle.emit('progress', e);
        });
        push.authorized.then(
          () => {
            auth.resolve(undefined);
          },
          (err: unknown) => {
            auth.reject(err);
          },
        );
        await push.done;
      }
      const client = new RegistryClient(r.registry, options);
      if (children.length === 0) await checkPushPermission(r, options);
      auth.resolve(undefined);
      const raw = await index.rawManifest();
      const put = await client.putManifest(
        r.repository,
        manifestReference(r, placement, raw),
        raw,
        index.mediaType,
        {
          signal: options.signal,
        },
      );
      handle.emit('progress', {
        type: 'manifest-done',
        digest: put.digest,
        size: raw.length,
        reference: r.toString(),
      });
      return {
        digest: put.digest,
        size: raw.length,
        mediaType: index.mediaType,
        reference: `${r.name}@${put.digest}`,
      };
    } catch (err) {
      auth.reject(err);
      throw err;
    }
  });
}

/**
 * writeAny pushes an image or an index.
 */
export function writeAny(
  ref: string | Reference,
  content: Image | ImageIndex,
  options: WriteOptions = {},
): PushHandle {
  return isImageIndex(content) ? writeIndex(ref, content, options) : write(ref, content, options);
}

/**
 * checkPushPermission opens an upload session in the reference's repository
 * and cancels it: resolves when pushing is allowed.
 * @throws UNAUTHORIZED, DENIED, NETWORK
 */
export async function checkPushPermission(
  ref: string | Reference,
  options: RemoteOptions = {},
): Promise<void> {
  const r = toRef(ref);
  const client = new RegistryClient(r.registry, options);
  const s = await client.openUpload(r.repository, options);
  await s.cancel();
}

/**
 * startUpload opens an upload session in the repository a reference names
 * (`registry/repository`, tag or digest ignored): the low-level API, with
 * `location`, `offset`, `write(chunk)`, `writeStream()`, `upload()`,
 * `commit(digest)`, `cancel()`, `status()` and `resume(location)`.
 * @throws UNAUTHORIZED, DENIED, NETWORK
 */
export async function startUpload(
  ref: string | Reference,
  options: RemoteOptions = {},
): Promise<BlobUpload> {
  const r = typeof ref === 'string' ? parseReference(ref) : ref;
  const client = new RegistryClient(r.registry, options);
  return client.openUpload(r.repository, options);
}
