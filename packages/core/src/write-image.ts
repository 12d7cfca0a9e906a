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

async function writeLayer(
  target: Target,
  layer: Layer,
  index: number,
  ctx: LayerContext,
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
    await pushVerified(target, known, layer.compressed(), io);
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
  const pushed = await target.pushUnknown(layer.compressed(), layer.mediaType, io);
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
 * (concurrently, bounded, each `compressed()` read once), then the config
 * once every layer has settled,
 * then the manifest, then the tag. A layer without a known descriptor goes
 * through the target's `pushUnknown` ({@link BlobWriter}) and its digest is
 * checked against `layer.digest()` afterwards. If a layer fails, the others
 * are cancelled and neither config nor manifest is written.
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
      layer: (layer, i, signal) =>
        writeLayer(target, layer, i, { signal, progress: options.progress }),
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
  /** layer stores one layer (or finds it present). */
  readonly layer: (layer: Layer, index: number, signal: AbortSignal) => Promise<void>;
  /** config stores the config; it runs once every layer step succeeded. */
  readonly config: (signal: AbortSignal) => Promise<void>;
  /** manifest stores the manifest; it runs last. */
  readonly manifest: (signal: AbortSignal) => Promise<T>;
}

/**
 * pushImageInOrder is the push order every writer shares (core's
 * {@link writeImage} and remote's `write()`): layer steps concurrently, at
 * most `concurrency` at once (default 4); the first failure aborts the
 * others and is thrown once they all settled; then the config, whose
 * diffIds are known only now; the manifest last.
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
  await Promise.allSettled(
    layers.map((layer, i) =>
      limiter
        .run(() => steps.layer(layer, i, signal))
        .catch((error: unknown) => {
          // The first failure is the cause; the others are its cancellations.
          first ??= { error };
          controller.abort(error);
        }),
    ),
  );
  throwIfAborted(options.signal);
  if (first !== undefined) throw first.error;
  throwIfAborted(signal);
  await steps.config(signal);
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
