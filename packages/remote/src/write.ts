import {
  AbortedError,
  DigestMismatchError,
  ErrorCode,
  ProgressEmitter,
  digestOf,
  isImageIndex,
  isLadingError,
  parseReference,
  type Descriptor,
  type Digest,
  type Image,
  type ImageIndex,
  type Layer,
  type MediaTypeString,
  type Reference,
} from '@lading/core';
import { childrenToWrite } from '@lading/core/internal';
import { RegistryClient, type RemoteOptions } from './client.js';
import { UploadError } from './errors.js';
import { sessionOf } from './session.js';
import { deferred, limiter, type Deferred } from './internal/limit.js';
import { UploadSession, type UploadMode } from './upload.js';

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

/** MONOLITHIC_MAX is the largest known-size layer uploaded in one PUT when no uploadMode is given. */
const MONOLITHIC_MAX = 1024 * 1024;

/** isTransportLeak tells an untyped abort or socket error from undici or node:net. */
function isTransportLeak(err: unknown): boolean {
  if (isLadingError(err) || !(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  return (
    err.name === 'AbortError' ||
    (typeof code === 'string' &&
      (code.startsWith('UND_ERR') || ['ECONNRESET', 'EPIPE', 'ECONNREFUSED'].includes(code)))
  );
}

/**
 * Placement says under which reference a manifest is stored: `tagged` (the
 * reference's tag or digest) for what the caller asked to write, `byDigest`
 * for an index's children, which are stored under their digest only.
 */
type Placement = 'tagged' | 'byDigest';

function manifestReference(ref: Reference, placement: Placement, raw: Uint8Array): string {
  if (placement === 'byDigest') return digestOf(raw);
  return ref.tag ?? ref.digest ?? 'latest';
}

/** inSession gives a call tree its session: the caller's, or a new one for this call. */
function inSession<T extends RemoteOptions>(options: T): T {
  return options.session === undefined ? { ...options, session: sessionOf(options) } : options;
}

function toRef(ref: string | Reference): Reference {
  return typeof ref === 'string' ? parseReference(ref) : ref;
}

type Prepared =
  | { readonly kind: 'skip'; readonly descriptor: Descriptor }
  | { readonly kind: 'mounted'; readonly descriptor: Descriptor; readonly from: string }
  | { readonly kind: 'upload'; readonly session: UploadSession };

/**
 * write pushes an image lazily (docs/design.md, write()). Right away it pings `/v2/`,
 * gets push-scope credentials and opens upload sessions — one for the
 * config, one per layer whose descriptor is unknown, and, for layers whose
 * descriptor is known, only when `HEAD` says the blob is missing and a
 * cross-repository mount (when `layer.source` names another repository of
 * this registry) did not link it. `authorized` settles on the first session
 * while the layers have produced zero bytes. Layers then upload
 * concurrently (`jobs`), each in one pass; the config is uploaded after
 * every layer settled, the manifest last. On any failure or abort, open
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
  const auth = deferred<undefined>();
  return new PushHandle(auth.promise, (handle) =>
    runWrite(ref, image, options, placement, auth, handle),
  );
}

async function runWrite(
  ref: Reference,
  image: Image,
  options: WriteOptions,
  placement: Placement,
  auth: Deferred<undefined>,
  handle: PushHandle,
): Promise<WriteResult> {
  const controller = new AbortController();
  const outer = options.signal;
  const onAbort = (): void => {
    controller.abort(outer?.reason);
  };
  if (outer?.aborted === true) onAbort();
  outer?.addEventListener('abort', onAbort, { once: true });
  const signal = controller.signal;
  const client = new RegistryClient(ref.registry, options);
  const repo = ref.repository;
  const sessions = new Set<UploadSession>();
  const opening: Promise<unknown>[] = [];
  let firstError: unknown;
  // read through a function: TypeScript cannot see callbacks assign it
  const failure = (): unknown => firstError;
  const fail = (err: unknown): void => {
    firstError ??= err;
    auth.reject(err);
    if (!signal.aborted) controller.abort(err);
  };
  const emit = handle.emit.bind(handle, 'progress');
  const open = async (id: string): Promise<UploadSession> => {
    const s = await client.openUpload(repo, { signal });
    sessions.add(s);
    auth.resolve(undefined);
    emit({ type: 'session-opened', id });
    return s;
  };
  try {
    await client.ping({ signal });
    const configSession = open('config');
    configSession.catch(fail);
    opening.push(configSession);
    const layers = await image.layers();
    const prepared = layers.map((layer, i) => prepare(layer, `layer-${i}`));
    for (const p of prepared) p.catch(fail);
    opening.push(...prepared);

    async function prepare(layer: Layer, id: string): Promise<Prepared> {
      const known = layer.knownDescriptor?.();
      if (known === undefined) return { kind: 'upload', session: await open(id) };
      const present = await client.headBlob(repo, known.digest, { signal });
      if (present !== undefined) return { kind: 'skip', descriptor: known };
      const source = layer.source;
      if (source?.registry === ref.registry && source.repository !== repo) {
        const m = await client.startUpload(repo, {
          signal,
          mount: { digest: known.digest, from: source.repository },
        });
        auth.resolve(undefined);
        if (!(m instanceof UploadSession))
          return { kind: 'mounted', descriptor: known, from: source.repository };
        sessions.add(m);
        emit({ type: 'session-opened', id });
        return { kind: 'upload', session: m };
      }
      return { kind: 'upload', session: await open(id) };
    }

    // Not one layer byte before the registry has accepted a session; and
    // every session is open (or the blob skipped/mounted) before data flows,
    // so that a failure can cancel every session the registry handed out.
    await auth.promise;
    await Promise.allSettled(prepared);
    if (failure() !== undefined) throw failure() as Error;

    const limit = limiter(Math.max(1, options.jobs ?? 4));
    const results = await Promise.allSettled(
      prepared.map(async (p, i) => {
        const layer = layers[i];
        if (layer === undefined) throw new Error('unreachable');
        const id = `layer-${i}`;
        const prep = await p;
        if (prep.kind === 'skip') {
          emit({
            type: 'blob-skipped',
            id,
            digest: prep.descriptor.digest,
            size: prep.descriptor.size,
            kind: 'layer',
          });
          return;
        }
        if (prep.kind === 'mounted') {
          emit({
            type: 'blob-mounted',
            id,
            digest: prep.descriptor.digest,
            size: prep.descriptor.size,
            from: prep.from,
          });
          return;
        }
        await limit(() => uploadLayer(layer, id, prep.session)).catch((err: unknown) => {
          fail(err);
          throw err;
        });
      }),
    );
    const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (rejected !== undefined) throw (failure() ?? rejected.reason) as Error;
    if (failure() !== undefined) throw failure() as Error;

    async function uploadLayer(layer: Layer, id: string, first: UploadSession): Promise<void> {
      const known = layer.knownDescriptor?.();
      let session = first;
      let lastError: unknown;
      await client.transport.withRetry(
        async (attempt) => {
          if (attempt > 0) {
            await session.cancel();
            sessions.delete(session);
            session = await open(id);
          }
          let stream;
          try {
            stream = layer.compressed();
          } catch (err) {
            if (isLadingError(err, ErrorCode.LayerConsumed) && lastError !== undefined) {
              throw new UploadError(
                `${id}: the upload failed and this single-pass layer cannot be read again`,
                lastError,
              );
            }
            throw err;
          }
          emit({
            type: 'blob-start',
            id,
            kind: 'layer',
            ...(known === undefined ? {} : { digest: known.digest, total: known.size }),
          });
          try {
            // Small layers whose descriptor is known go in one PUT (one round trip less).
            const mode =
              options.uploadMode ??
              (known !== undefined && known.size <= MONOLITHIC_MAX ? 'monolithic' : 'stream');
            const result = await session.upload(stream, {
              mode: mode === 'monolithic' && known === undefined ? 'stream' : mode,
              ...(options.chunkSize === undefined ? {} : { chunkSize: options.chunkSize }),
              expected: known === undefined ? {} : { digest: known.digest, size: known.size },
              onProgress: (bytes) => {
                emit({
                  type: 'blob-progress',
                  id,
                  bytes,
                  kind: 'layer',
                  ...(known === undefined ? {} : { total: known.size }),
                });
              },
              signal,
            });
            sessions.delete(session);
            // The layer's own promises settle now that its stream ended.
            const [digest, size] = await Promise.all([layer.digest(), layer.size()]);
            if (digest !== result.digest) throw new DigestMismatchError(digest, result.digest, id);
            if (size !== result.size)
              throw new UploadError(
                `${id}: the layer reports ${size} bytes, ${result.size} were uploaded`,
              );
            emit({
              type: 'blob-done',
              id,
              digest: result.digest,
              size: result.size,
              kind: 'layer',
            });
          } catch (err) {
            stream.destroy();
            lastError = err;
            throw err;
          }
        },
        signal,
        (attempt, delayMs, err) => {
          emit({
            type: 'retry',
            id,
            attempt,
            delayMs,
            reason: err instanceof Error ? err.message : String(err),
          });
        },
      );
    }

    // Config after every layer settled (its diffIds are known now), manifest last.
    const rawConfig = await image.rawConfig();
    const configDigest = digestOf(rawConfig);
    const cs = await configSession;
    emit({
      type: 'blob-start',
      id: 'config',
      digest: configDigest,
      total: rawConfig.length,
      kind: 'config',
    });
    await client.transport.withRetry(async (attempt) => {
      const s = attempt === 0 ? cs : await open('config');
      await s.commit(configDigest, { body: rawConfig, signal });
      sessions.delete(s);
    }, signal);
    emit({
      type: 'blob-done',
      id: 'config',
      digest: configDigest,
      size: rawConfig.length,
      kind: 'config',
    });
    const rawManifest = await image.rawManifest();
    const put = await client.putManifest(
      repo,
      manifestReference(ref, placement, rawManifest),
      rawManifest,
      image.mediaType,
      { signal },
    );
    if (ref.digest !== undefined && ref.digest !== put.digest) {
      throw new DigestMismatchError(ref.digest, put.digest, 'manifest');
    }
    if (ref.tag !== undefined && ref.digest !== undefined) {
      await client.putManifest(repo, ref.digest, rawManifest, image.mediaType, { signal });
    }
    emit({
      type: 'manifest-done',
      digest: put.digest,
      size: rawManifest.length,
      reference: ref.toString(),
    });
    return {
      digest: put.digest,
      size: rawManifest.length,
      mediaType: image.mediaType,
      reference: `${ref.name}@${put.digest}`,
    };
  } catch (err) {
    const raw = outer?.aborted === true ? new AbortedError(outer.reason) : (firstError ?? err);
    // An internal abort or socket error from below is wrapped in a typed
    // error (kept as the cause); a layer source's own error passes as is.
    const cause = !isTransportLeak(raw)
      ? raw
      : new UploadError(
          `push to ${ref.toString()} failed: ${raw instanceof Error ? raw.message : String(raw)}`,
          raw,
        );
    auth.reject(cause);
    controller.abort(cause);
    // Let session POSTs in flight settle so that every session the registry
    // handed out is known, then cancel them all.
    await Promise.allSettled(opening);
    await Promise.all([...sessions].map((s) => s.cancel()));
    throw cause;
  } finally {
    outer?.removeEventListener('abort', onAbort);
  }
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
  await client.ping(options);
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
): Promise<UploadSession> {
  const r = typeof ref === 'string' ? parseReference(ref) : ref;
  const client = new RegistryClient(r.registry, options);
  await client.ping(options);
  return client.openUpload(r.repository, options);
}
