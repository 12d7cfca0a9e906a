import {
  AbortedError,
  DigestMismatchError,
  ErrorCode,
  digestOf,
  isLadingError,
  type Descriptor,
  type Image,
  type Layer,
  type MediaTypeString,
  type ProgressEmitter,
  type Reference,
} from '@lading/core';
import { openRead, pushImageInOrder, type Deferred } from '@lading/core/internal';
import { RegistryClient, type RemoteOptions } from './client.js';
import { UploadError } from './errors.js';
import { BlobUpload, type UploadMode } from './upload.js';
import { uploadMode } from './upload-policy.js';

/** PushOptions are what a {@link Pusher} reads of the write options. */
export interface PushOptions extends RemoteOptions {
  readonly jobs?: number | undefined;
  readonly uploadMode?: UploadMode | undefined;
  readonly chunkSize?: number | undefined;
}

/**
 * Placement says under which reference a manifest is stored: `tagged` (the
 * reference's tag or digest) for what the caller asked to write, `byDigest`
 * for an index's children, which are stored under their digest only.
 */
export type Placement = 'tagged' | 'byDigest';

/** manifestReference is where a manifest goes for its {@link Placement}. */
export function manifestReference(ref: Reference, placement: Placement, raw: Uint8Array): string {
  if (placement === 'byDigest') return digestOf(raw);
  return ref.tag ?? ref.digest ?? 'latest';
}

/** Pushed is what a push stored. */
export type Pushed = {
  readonly digest: Descriptor['digest'];
  readonly size: number;
  readonly mediaType: MediaTypeString;
};

type Prepared =
  | { readonly kind: 'skip'; readonly descriptor: Descriptor }
  | { readonly kind: 'mounted'; readonly descriptor: Descriptor; readonly from: string }
  | { readonly kind: 'upload'; readonly session: BlobUpload };

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
 * Pusher pushes one image in named steps (docs/design.md, write()):
 * {@link Pusher.openSessions} (ping, config session, one session per layer
 * that needs one; `authorized` settles here), then core's
 * `pushImageInOrder` runs {@link Pusher.uploadLayer} per layer (bounded by
 * `jobs`, each layer read once, retried while it can be re-read),
 * {@link Pusher.uploadConfig} (once every layer has been read: the diffIds
 * are known; beside the layers' last requests), {@link Pusher.putManifest}
 * once everything is stored. {@link Pusher.abandon} cancels
 * every session the registry handed out.
 */
export class Pusher {
  readonly #ref: Reference;
  readonly #image: Image;
  readonly #options: PushOptions;
  readonly #placement: Placement;
  readonly #authorized: Deferred<undefined>;
  readonly #progress: ProgressEmitter;
  readonly #client: RegistryClient;
  readonly #controller = new AbortController();
  readonly #sessions = new Set<BlobUpload>();
  readonly #opening: Promise<unknown>[] = [];
  #firstError: { error: unknown } | undefined;
  #config: Promise<BlobUpload> | undefined;
  #layers: readonly Layer[] = [];
  #prepared: Promise<Prepared>[] = [];

  constructor(
    ref: Reference,
    image: Image,
    options: PushOptions,
    placement: Placement,
    authorized: Deferred<undefined>,
    progress: ProgressEmitter,
  ) {
    this.#ref = ref;
    this.#image = image;
    this.#options = options;
    this.#placement = placement;
    this.#authorized = authorized;
    this.#progress = progress;
    this.#client = new RegistryClient(ref.registry, options);
  }

  get #signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** run performs every step in order, or abandons the push on the first failure. */
  async run(): Promise<Pushed> {
    const outer = this.#options.signal;
    const onAbort = (): void => {
      this.#controller.abort(outer?.reason);
    };
    if (outer?.aborted === true) onAbort();
    outer?.addEventListener('abort', onAbort, { once: true });
    try {
      await this.openSessions();
      // core's one push order: layers (bounded), config once all were read, manifest last
      return await pushImageInOrder(
        this.#layers,
        {
          layer: (layer, i, _signal, read) => this.uploadLayer(layer, i, read),
          config: () => this.uploadConfig(),
          manifest: () => this.putManifest(),
        },
        { concurrency: Math.max(1, Math.floor(this.#options.jobs ?? 4)), signal: this.#signal },
      );
    } catch (err) {
      throw await this.abandon(err);
    } finally {
      outer?.removeEventListener('abort', onAbort);
    }
  }

  /** #settle is the one place `authorized` settles: on the first session, mount, or failure. */
  #settle(err?: unknown): void {
    if (err === undefined) this.#authorized.resolve(undefined);
    else this.#authorized.reject(err);
  }

  #fail(err: unknown): void {
    this.#firstError ??= { error: err };
    this.#settle(err);
    if (!this.#signal.aborted) this.#controller.abort(err);
  }

  #throwIfFailed(): void {
    if (this.#firstError !== undefined) throw this.#firstError.error;
  }

  #emit(event: Parameters<ProgressEmitter['emit']>[1]): void {
    this.#progress.emit('progress', event);
  }

  async #open(id: string): Promise<BlobUpload> {
    const s = await this.#client.openUpload(this.#ref.repository, { signal: this.#signal });
    this.#sessions.add(s);
    this.#settle();
    this.#emit({ type: 'session-opened', id });
    return s;
  }

  async #prepare(layer: Layer, id: string): Promise<Prepared> {
    const known = layer.knownDescriptor?.();
    if (known === undefined) return { kind: 'upload', session: await this.#open(id) };
    const repo = this.#ref.repository;
    const present = await this.#client.headBlob(repo, known.digest, { signal: this.#signal });
    if (present !== undefined) return { kind: 'skip', descriptor: known };
    const source = layer.source;
    if (source?.registry !== this.#ref.registry || source.repository === repo) {
      return { kind: 'upload', session: await this.#open(id) };
    }
    const m = await this.#client.openUploadOrMount(repo, {
      signal: this.#signal,
      mount: { digest: known.digest, from: source.repository },
    });
    this.#settle();
    if (!(m instanceof BlobUpload))
      return { kind: 'mounted', descriptor: known, from: source.repository };
    this.#sessions.add(m);
    this.#emit({ type: 'session-opened', id });
    return { kind: 'upload', session: m };
  }

  /**
   * openSessions concurrently opens the config's session and, per layer, a
   * session, a skip (HEAD found the blob) or a mount (the first request
   * stands in for a ping: see Transport.ready). Not one
   * layer byte flows before the registry accepted a session, and every
   * session is open before data flows, so a failure can cancel them all.
   */
  async openSessions(): Promise<void> {
    const config = this.#open('config');
    config.catch((err: unknown) => {
      this.#fail(err);
    });
    this.#config = config;
    this.#opening.push(config);
    this.#layers = await this.#image.layers();
    this.#prepared = this.#layers.map((layer, i) => this.#prepare(layer, `layer-${i}`));
    for (const p of this.#prepared) {
      p.catch((err: unknown) => {
        this.#fail(err);
      });
      this.#opening.push(p);
    }
    await this.#authorized.promise;
    await Promise.allSettled(this.#prepared);
    this.#throwIfFailed();
  }

  /**
   * uploadLayer reports a skipped or mounted layer, or uploads it into the
   * session opened for it, retried while the layer can be read again. A
   * failure aborts the whole push.
   */
  async uploadLayer(layer: Layer, i: number, read: () => void): Promise<void> {
    const id = `layer-${i}`;
    const prepared = this.#prepared[i];
    if (prepared === undefined) throw new Error('unreachable');
    const prep = await prepared;
    if (prep.kind === 'skip') {
      const { digest, size } = prep.descriptor;
      this.#emit({ type: 'blob-skipped', id, digest, size, kind: 'layer' });
      return;
    }
    if (prep.kind === 'mounted') {
      const { digest, size } = prep.descriptor;
      this.#emit({ type: 'blob-mounted', id, digest, size, from: prep.from });
      return;
    }
    await this.#uploadLayer(layer, id, prep.session, read).catch((err: unknown) => {
      this.#fail(err);
      throw err;
    });
  }

  async #uploadLayer(layer: Layer, id: string, first: BlobUpload, read: () => void): Promise<void> {
    let session = first;
    let lastError: unknown;
    await this.#client.transport.withRetry(
      async (attempt) => {
        if (attempt > 0) {
          await session.cancel();
          this.#sessions.delete(session);
          session = await this.#open(id);
        }
        try {
          await this.#uploadOnce(layer, id, session, lastError, read);
        } catch (err) {
          lastError = err;
          throw err;
        }
      },
      this.#signal,
      (attempt, delayMs, err) => {
        const reason = err instanceof Error ? err.message : String(err);
        this.#emit({ type: 'retry', id, attempt, delayMs, reason });
      },
    );
  }

  /** #uploadOnce reads the layer once into `session` and checks what the layer reports. */
  async #uploadOnce(
    layer: Layer,
    id: string,
    session: BlobUpload,
    lastError: unknown,
    read: () => void,
  ): Promise<void> {
    const known = layer.knownDescriptor?.();
    let stream;
    try {
      // (the config may go once every layer's pass has settled its promises)
      stream = openRead(layer, read);
    } catch (err) {
      if (isLadingError(err, ErrorCode.LayerConsumed) && lastError !== undefined) {
        throw new UploadError(
          `${id}: the upload failed and this single-pass layer cannot be read again`,
          lastError,
        );
      }
      throw err;
    }
    const total = known === undefined ? {} : { total: known.size };
    this.#emit({
      type: 'blob-start',
      id,
      kind: 'layer',
      ...(known === undefined ? {} : { digest: known.digest, total: known.size }),
    });
    try {
      const result = await session.upload(stream, {
        mode: uploadMode(this.#options.uploadMode, known),
        ...(this.#options.chunkSize === undefined ? {} : { chunkSize: this.#options.chunkSize }),
        expected: known === undefined ? {} : { digest: known.digest, size: known.size },
        onProgress: (bytes) => {
          this.#emit({ type: 'blob-progress', id, bytes, kind: 'layer', ...total });
        },
        signal: this.#signal,
      });
      this.#sessions.delete(session);
      // The layer's own promises settle now that its stream ended.
      const [digest, size] = await Promise.all([layer.digest(), layer.size()]);
      if (digest !== result.digest) throw new DigestMismatchError(digest, result.digest, id);
      if (size !== result.size)
        throw new UploadError(
          `${id}: the layer reports ${size} bytes, ${result.size} were uploaded`,
        );
      this.#emit({
        type: 'blob-done',
        id,
        digest: result.digest,
        size: result.size,
        kind: 'layer',
      });
    } catch (err) {
      stream.destroy();
      throw err;
    }
  }

  /** uploadConfig commits the config into the session opened for it (a new one on retries). */
  async uploadConfig(): Promise<void> {
    const rawConfig = await this.#image.rawConfig();
    const digest = digestOf(rawConfig);
    const size = rawConfig.length;
    const first = await (this.#config ?? this.#open('config'));
    this.#emit({ type: 'blob-start', id: 'config', digest, total: size, kind: 'config' });
    await this.#client.transport.withRetry(async (attempt) => {
      const s = attempt === 0 ? first : await this.#open('config');
      await s.commit(digest, { body: rawConfig, signal: this.#signal });
      this.#sessions.delete(s);
    }, this.#signal);
    this.#emit({ type: 'blob-done', id: 'config', digest, size, kind: 'config' });
  }

  /** putManifest stores the manifest last: under its placement, and under the digest too when the reference has both. */
  async putManifest(): Promise<Pushed> {
    const ref = this.#ref;
    const { repository } = ref;
    const { mediaType } = this.#image;
    const raw = await this.#image.rawManifest();
    const io = { signal: this.#signal };
    const where = manifestReference(ref, this.#placement, raw);
    const put = await this.#client.putManifest(repository, where, raw, mediaType, io);
    if (ref.digest !== undefined && ref.digest !== put.digest) {
      throw new DigestMismatchError(ref.digest, put.digest, 'manifest');
    }
    if (ref.tag !== undefined && ref.digest !== undefined) {
      await this.#client.putManifest(repository, ref.digest, raw, mediaType, io);
    }
    const reference = ref.toString();
    this.#emit({ type: 'manifest-done', digest: put.digest, size: raw.length, reference });
    return { digest: put.digest, size: raw.length, mediaType };
  }

  /**
   * abandon turns a failure into the push's error (an untyped transport
   * error wrapped as UPLOAD_FAILED, an outer abort as ABORTED), settles
   * `authorized`, and cancels every session once the POSTs in flight settled.
   */
  async abandon(err: unknown): Promise<unknown> {
    const outer = this.#options.signal;
    const raw =
      outer?.aborted === true
        ? new AbortedError(outer.reason)
        : this.#firstError === undefined
          ? err
          : this.#firstError.error;
    // An internal abort or socket error from below is wrapped in a typed
    // error (kept as the cause); a layer source's own error passes as is.
    const cause = !isTransportLeak(raw)
      ? raw
      : new UploadError(
          `push to ${this.#ref.toString()} failed: ${raw instanceof Error ? raw.message : String(raw)}`,
          raw,
        );
    this.#settle(cause);
    this.#controller.abort(cause);
    await Promise.allSettled(this.#opening);
    await Promise.all([...this.#sessions].map((s) => s.cancel()));
    return cause;
  }
}
