import { Readable } from 'node:stream';
import { isDigest } from './digest.js';
import {
  DigestMismatchError,
  ErrorCode,
  LadingError,
  SizeMismatchError,
  throwIfAborted,
} from './errors.js';
import { childrenToWrite, isImageIndex, type Image, type ImageIndex } from './image.js';
import type { Layer } from './layer.js';
import type { ProgressEmitter } from './progress.js';
import { pushVerified } from './copy.js';
import { deferred } from './deferred.js';
import { Limiter } from './limiter.js';
import { isBlobWriter, isMounter, type IoOptions, type Target } from './target.js';
import type { Descriptor } from './wire.js';

/** WriteImageOptions configure {@link writeImage} and {@link writeImageIndex}. */
export interface WriteImageOptions extends IoOptions {
  /** concurrency bounds the layers written at once; default 4. */
  readonly concurrency?: number;
  /** progress receives blob and manifest events. */
  readonly progress?: ProgressEmitter;
}

interface LayerContext extends IoOptions {
  readonly progress: ProgressEmitter | undefined;
}

/**
 * openRead opens the layer's compressed stream, then calls `read` once the
 * layer's digest, size and diffId have settled: the stream's pass settles
 * them (asking before opening could start a pass of its own). A rejected
 * promise calls nothing: the pass failed, and its step fails with it.
 */
export function openRead(layer: Layer, read: () => void): Readable {
  const stream = layer.compressed();
  Promise.all([layer.digest(), layer.size(), layer.diffId()]).then(read, () => undefined);
  return stream;
}

async function writeLayer(
  target: Target,
  layer: Layer,
  index: number,
  ctx: LayerContext,
  read: () => void,
): Promise<void> {
  const io = { signal: ctx.signal };
  const id = `layer-${index}`;
  const known = layer.knownDescriptor?.();
  if (known !== undefined) {
    if (await target.exists(known, io)) {
      ctx.progress?.emit('progress', {
        type: 'blob-skipped',
        id,
        digest: known.digest,
        size: known.size,
        kind: 'layer',
      });
      return;
    }
    const source = layer.source;
    if (
      source !== undefined &&
      isMounter(target) &&
      source.registry === target.registryHost &&
      source.repository !== target.repository &&
      (await target.mount(known, source.repository, io))
    ) {
      ctx.progress?.emit('progress', {
        type: 'blob-mounted',
        id,
        digest: known.digest,
        size: known.size,
        from: source.repository,
      });
      return;
    }
    ctx.progress?.emit('progress', {
      type: 'blob-start',
      id,
      digest: known.digest,
      total: known.size,
      kind: 'layer',
    });
    await pushVerified(target, known, openRead(layer, read), io);
    ctx.progress?.emit('progress', {
      type: 'blob-done',
      id,
      digest: known.digest,
      size: known.size,
      kind: 'layer',
    });
    return;
  }
  if (!isBlobWriter(target)) {
    // Awaiting digest() first would never settle for a single-pass layer.
    throw new LadingError(
      ErrorCode.Unsupported,
      'this target needs a digest before the bytes; layers of unknown digest need a target implementing BlobWriter',
    );
  }
  ctx.progress?.emit('progress', { type: 'blob-start', id, kind: 'layer' });
  const pushed = await target.pushUnknown(openRead(layer, read), layer.mediaType, io);
  const [digest, size] = await Promise.all([layer.digest(), layer.size()]);
  if (pushed.digest !== digest) throw new DigestMismatchError(digest, pushed.digest, 'layer');
  if (pushed.size !== size) throw new SizeMismatchError(size, pushed.size, 'layer');
  ctx.progress?.emit('progress', { type: 'blob-done', id, digest, size, kind: 'layer' });
}

async function pushSmall(
  target: Target,
  desc: Descriptor,
  bytes: Uint8Array,
  options: IoOptions,
): Promise<void> {
  if (await target.exists(desc, options)) return;
  await pushVerified(
    target,
    desc,
    Readable.from([Buffer.from(bytes)], { objectMode: false }),
    options,
  );
}

function withSignal(options: IoOptions, controller: AbortController): AbortSignal {
  return options.signal === undefined
    ? controller.signal
    : AbortSignal.any([options.signal, controller.signal]);
}

/**
 * writeImage writes an Image (stream layers included) into any target in
 * the order remote `write()` shares with it (`pushImageInOrder`): layers
 * (concurrently, bounded, each `compressed()` read once), the config once
 * every layer has been read, then the manifest, then the tag. A layer
 * without a known descriptor goes through the target's `pushUnknown`
 * ({@link BlobWriter}) and its digest is checked against `layer.digest()`
 * afterwards. If a layer fails, the others
 * are cancelled and no manifest is written.
 * @throws UNSUPPORTED (unknown-digest layer, target without BlobWriter),
 *   DIGEST_MISMATCH, SIZE_MISMATCH, ABORTED, and whatever the target throws.
 */
export async function writeImage(
  target: Target,
  ref: string | undefined,
  image: Image,
  options: WriteImageOptions = {},
): Promise<Descriptor> {
  throwIfAborted(options.signal);
  const layers = await image.layers();
  return pushImageInOrder(
    layers,
    {
      layer: (layer, i, signal, read) =>
        writeLayer(target, layer, i, { signal, progress: options.progress }, read),
      config: async (signal) => {
        const [desc, raw] = await Promise.all([image.configDescriptor(), image.rawConfig()]);
        await pushSmall(target, desc, raw, { signal });
      },
      manifest: () => pushManifest(target, ref, image, options),
    },
    options,
  );
}

/**
 * ImagePushSteps are the three kinds of step of one image push, as
 * {@link pushImageInOrder} runs them. Each gets a signal that aborts when
 * the push fails.
 */
export interface ImagePushSteps<T> {
  /**
   * layer stores one layer (or finds it present). It calls `read` once the
   * layer's bytes have all been read, when its digest, size and diffId are
   * settled, which may come before the layer is stored (a registry still
   * answering the last request); a step that returns counts as read.
   */
  readonly layer: (
    layer: Layer,
    index: number,
    signal: AbortSignal,
    read: () => void,
  ) => Promise<void>;
  /** config stores the config; it starts once every layer was read. */
  readonly config: (signal: AbortSignal) => Promise<void>;
  /** manifest stores the manifest; it runs last. */
  readonly manifest: (signal: AbortSignal) => Promise<T>;
}

/**
 * pushImageInOrder is the push order every writer shares (core's
 * {@link writeImage} and remote's `write()`): layer steps concurrently, at
 * most `concurrency` at once (default 4); the config as soon as every
 * layer has been read (its diffIds are known only then), beside the
 * layers' last requests; the manifest once every layer and the config are
 * stored. The first failure aborts the other steps and is thrown once they
 * all settled; no manifest is written then (a config already stored stays,
 * unreferenced, like a layer already stored).
 * @throws ABORTED when `signal` aborts, else the first failing step's error.
 */
export async function pushImageInOrder<T>(
  layers: readonly Layer[],
  steps: ImagePushSteps<T>,
  options: IoOptions & { readonly concurrency?: number | undefined } = {},
): Promise<T> {
  throwIfAborted(options.signal);
  const controller = new AbortController();
  const signal = withSignal(options, controller);
  const limiter = new Limiter(options.concurrency ?? 4);
  let first: { error: unknown } | undefined;
  const fail = (error: unknown): void => {
    // The first failure is the cause; the others are its cancellations.
    first ??= { error };
    controller.abort(error);
  };
  // Every layer read (or the push failed): the config may go.
  let unread = layers.length;
  const allRead = deferred<boolean>();
  if (unread === 0) allRead.resolve(true);
  const onAbort = (): void => {
    allRead.resolve(false);
  };
  signal.addEventListener('abort', onAbort, { once: true });
  const config = allRead.promise.then(async (go) => {
    if (go && !signal.aborted) await steps.config(signal);
  });
  try {
    await Promise.allSettled([
      ...layers.map((layer, i) => {
        let done = false;
        const read = (): void => {
          if (done) return;
          done = true;
          if (--unread === 0) allRead.resolve(true);
        };
        return limiter
          .run(() => steps.layer(layer, i, signal, read))
          .then(read)
          .catch(fail);
      }),
      config.catch(fail),
    ]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  throwIfAborted(options.signal);
  if (first !== undefined) throw first.error;
  throwIfAborted(signal);
  return steps.manifest(signal);
}

/**
 * writeImageIndex writes every child of an index (images with {@link writeImage},
 * nested indexes recursively), then the index manifest, then the tag.
 * Children come from `pendingChildren()` when the index has it, so children
 * over single-pass stream layers are written (and so get their digests)
 * before the index manifest is computed; the manifest then lists exactly
 * what was written.
 * @throws DIGEST_MISMATCH when the index lists a child digest that was not written.
 */
export async function writeImageIndex(
  target: Target,
  ref: string | undefined,
  index: ImageIndex,
  options: WriteImageOptions = {},
): Promise<Descriptor> {
  throwIfAborted(options.signal);
  const written = new Set<string>();
  for (const child of await childrenToWrite(index)) {
    const d = isImageIndex(child)
      ? await writeImageIndex(target, undefined, child, options)
      : await writeImage(target, undefined, child, options);
    written.add(d.digest);
  }
  for (const listed of (await index.indexManifest()).manifests) {
    if (!written.has(listed.digest)) {
      throw new DigestMismatchError(listed.digest, [...written].join(', '), 'index child');
    }
  }
  return pushManifest(target, ref, index, options);
}

/** pushManifest stores an image's or index's manifest last, reports it, then tags it. */
async function pushManifest(
  target: Target,
  ref: string | undefined,
  manifest: Pick<Image | ImageIndex, 'mediaType' | 'rawManifest' | 'digest'>,
  options: WriteImageOptions,
): Promise<Descriptor> {
  const io = { signal: options.signal };
  const raw = await manifest.rawManifest();
  const desc: Descriptor = {
    mediaType: manifest.mediaType,
    digest: await manifest.digest(),
    size: raw.length,
  };
  await pushSmall(target, desc, raw, io);
  options.progress?.emit('progress', {
    type: 'manifest-done',
    digest: desc.digest,
    size: desc.size,
    ...(ref === undefined ? {} : { reference: ref }),
  });
  if (ref !== undefined && ref !== '' && !isDigest(ref)) await target.tag(desc, ref, io);
  return desc;
}

/**
 * writeIndex is the former name of {@link writeImageIndex}.
 * @deprecated Use writeImageIndex; `writeIndex` in @lading/remote pushes to a registry reference.
 */
export const writeIndex = writeImageIndex;
