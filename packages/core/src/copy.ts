import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Verifier, VerifyingStream, digestOf, isDigest, parseDigest } from './digest.js';
import { ErrorCode, LadingError, throwIfAborted } from './errors.js';
import { isVerified, markVerified } from './verified.js';
import { isImageManifestMediaType, isIndexMediaType, isManifestMediaType } from './media-types.js';
import type { BlobKind, ProgressEmitter } from './progress.js';
import {
  isBlobLender,
  isMounter,
  isPushPreparer,
  isRetrier,
  isSinkOpener,
  isTagPusher,
  type BlobLender,
  type BlobSink,
  type IoOptions,
  type SinkOpener,
  type Target,
} from './target.js';
import { Limiter } from './limiter.js';
import { ByteCounter } from './byte-counter.js';
import { MAX_MANIFEST_SIZE, readCapped } from './parse.js';
import { selectPlatform } from './platform.js';
import type { Descriptor, Platform } from './wire.js';

/** CopyHookResult is what a `preCopy` hook may answer: `'skip'` leaves the node (and its sub-graph) out. */
export type CopyHookResult = 'skip' | undefined;

/**
 * CopyOptions configure {@link copy}. Hooks run on the copy's own path (they
 * are awaited), so a slow hook slows the copy down; exceptions thrown by a
 * hook fail the copy.
 */
export interface CopyOptions extends IoOptions {
  /** concurrency bounds the transfers in flight (fetch+push of one node); default 4. */
  readonly concurrency?: number;
  /** platform copies one platform out of an index: `'linux/arm64'`, `'linux/arm/v7'` or a Platform. */
  readonly platform?: string | Platform;
  /** progress receives blob-start/-progress/-done/-skipped/-mounted and manifest-done events. */
  readonly progress?: ProgressEmitter;
  /** preCopy runs before a node is looked at; return `'skip'` to leave it out. */
  readonly preCopy?: (desc: Descriptor) => CopyHookResult | Promise<CopyHookResult>;
  /**
   * postCopy runs once a node has been pushed to the destination (children
   * first). For manifests it also receives the verified manifest bytes, so a
   * caller can read the graph as it is copied; blobs can be read back with
   * `dst.fetch(desc)`.
   */
  readonly postCopy?: (desc: Descriptor, manifest?: Uint8Array) => unknown;
  /** onSkipped runs for a node the destination already had (its sub-graph is not visited). */
  readonly onSkipped?: (desc: Descriptor) => unknown;
  /** onMounted runs for a blob mounted from another repository of the same registry. */
  readonly onMounted?: (desc: Descriptor, fromRepository: string) => unknown;
  /**
   * copyForeignLayers copies layers that carry `urls` and a foreign or
   * non-distributable media type; by default they are left out, like
   * go-containerregistry and skopeo do.
   */
  readonly copyForeignLayers?: boolean;
}

/**
 * fetchVerified reads a small blob (manifest or config) from `target`,
 * capped at 4 MiB and checked against the descriptor's digest and size.
 * @throws MANIFEST_TOO_LARGE, DIGEST_MISMATCH, SIZE_MISMATCH, NOT_FOUND
 */
export async function fetchVerified(
  target: Target,
  desc: Descriptor,
  options: IoOptions = {},
): Promise<Buffer> {
  if (desc.size > MAX_MANIFEST_SIZE) {
    throw new LadingError(
      ErrorCode.ManifestTooLarge,
      `${desc.digest} is ${desc.size} bytes, over the ${MAX_MANIFEST_SIZE}-byte cap`,
    );
  }
  const stream = await target.fetch(desc, options);
  const verifier = new VerifyingStream(desc, desc.mediaType);
  const feeding = pipeline(stream, verifier, { signal: options.signal });
  feeding.catch(() => undefined);
  const bytes = await readCapped(verifier, MAX_MANIFEST_SIZE, options.signal);
  await feeding;
  return bytes;
}

function invalid(owner: string, why: string): LadingError {
  return new LadingError(ErrorCode.InvalidManifest, `${owner}: ${why}`);
}

function asDescriptor(value: unknown, owner: string, where: string): Descriptor {
  if (typeof value !== 'object' || value === null)
    throw invalid(owner, `${where} is not an object`);
  const v = value as Partial<Record<keyof Descriptor, unknown>>;
  if (typeof v.mediaType !== 'string') throw invalid(owner, `${where}.mediaType is missing`);
  if (typeof v.digest !== 'string' || !isDigest(v.digest)) {
    throw invalid(owner, `${where}.digest is not a valid digest`);
  }
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) {
    throw invalid(owner, `${where}.size is not a non-negative integer`);
  }
  return value as Descriptor;
}

/**
 * successorsOf lists the children of a manifest given its bytes: the
 * manifests of an index, the config and layers of an image manifest, and the
 * `subject` of either. Other media types have no children. Errors name the
 * manifest `name` (default `manifest <digest>`; an OCI layout's index.json
 * has no digest of its own).
 * @throws INVALID_MANIFEST
 */
export function successorsOf(
  bytes: Uint8Array,
  desc: Descriptor,
  name = `manifest ${desc.digest}`,
): Descriptor[] {
  if (!isManifestMediaType(desc.mediaType)) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new LadingError(ErrorCode.InvalidManifest, `${name} is not JSON`, {
      cause: err,
    });
  }
  if (typeof parsed !== 'object' || parsed === null) throw invalid(name, 'not a JSON object');
  const m = parsed as Record<string, unknown>;
  const out: Descriptor[] = [];
  if (isIndexMediaType(desc.mediaType)) {
    if (!Array.isArray(m.manifests)) throw invalid(name, 'an index needs a manifests array');
    m.manifests.forEach((d, i) => out.push(asDescriptor(d, name, `manifests[${i}]`)));
  } else {
    out.push(asDescriptor(m.config, name, 'config'));
    if (!Array.isArray(m.layers)) throw invalid(name, 'an image manifest needs a layers array');
    m.layers.forEach((d, i) => out.push(asDescriptor(d, name, `layers[${i}]`)));
  }
  if (m.subject !== undefined) out.push(asDescriptor(m.subject, name, 'subject'));
  return out;
}

/**
 * successors lists a node's children in `target`: what copy() visits below
 * `desc`. Blobs have none.
 * @throws NOT_FOUND, INVALID_MANIFEST, DIGEST_MISMATCH
 */
export async function successors(
  target: Target,
  desc: Descriptor,
  options: IoOptions = {},
): Promise<Descriptor[]> {
  if (!isManifestMediaType(desc.mediaType)) return [];
  return successorsOf(await fetchVerified(target, desc, options), desc);
}

function isForeign(desc: Descriptor): boolean {
  return (
    (desc.urls?.length ?? 0) > 0 &&
    (desc.mediaType.includes('.nondistributable.') || desc.mediaType.includes('.foreign.'))
  );
}

function kindOf(desc: Descriptor, parentKinds: Map<string, BlobKind>): BlobKind {
  if (isManifestMediaType(desc.mediaType)) return 'manifest';
  return parentKinds.get(desc.digest) ?? 'blob';
}

/**
 * pushVerified feeds `source` through a digest verifier into `dst.push`, and
 * cleans both up whichever side fails first. A source that already checks
 * its own bytes against `desc` (see markVerified: a registry's or layout's
 * fetch) is not hashed a second time; what `dst.push` receives is marked
 * verified either way, so a target that commits only after a clean end can
 * skip its own hash too.
 */
export function pushVerified(
  dst: Target,
  desc: Descriptor,
  source: Readable,
  options: IoOptions & { onBytes?: (bytes: number) => void } = {},
): Promise<void> {
  return feedVerified(
    (content) => dst.push(desc, content, { signal: options.signal }),
    desc,
    source,
    options,
  );
}

/** feedVerified is {@link pushVerified} into any push of `desc` (a prepared one, say). */
async function feedVerified(
  push: (content: Readable) => Promise<void>,
  desc: Descriptor,
  source: Readable,
  options: IoOptions & { onBytes?: (bytes: number) => void },
): Promise<void> {
  const stages: (Readable | Transform)[] = [source];
  if (!isVerified(source, desc)) stages.push(new VerifyingStream(desc, desc.mediaType));
  if (options.onBytes !== undefined) {
    stages.push(markVerified(ByteCounter.reporting(options.onBytes), desc));
  }
  const tail = stages[stages.length - 1] as Readable;
  const feeding = stages.length > 1 ? pipeline(stages, { signal: options.signal }) : undefined;
  feeding?.catch(() => undefined);
  try {
    await push(tail);
  } catch (err) {
    source.destroy();
    tail.destroy();
    await feeding?.catch(() => undefined);
    throw err;
  }
  // A target may stop reading early because it already holds the blob (a
  // concurrent writer got there first); what it stored, it verified.
  if (feeding === undefined) {
    if (!source.readableEnded) source.destroy();
    return;
  }
  await feeding.catch((err: unknown) => {
    if (!tail.destroyed || tail.errored !== null) throw err;
  });
}

/**
 * lendInto moves a blob from a lender straight into a sink, hashing and
 * counting every chunk as it passes; the sink opens while the source's
 * request is in flight and commits only when the bytes are `desc`'s. Resolves
 * false, having stored nothing, when the source cannot lend this blob or
 * the destination cannot take it as chunks (the caller then streams it).
 * @throws DIGEST_MISMATCH, SIZE_MISMATCH, ABORTED, NETWORK
 */
async function lendInto(
  src: BlobLender,
  dst: SinkOpener,
  desc: Descriptor,
  options: IoOptions & { onBytes?: ((bytes: number) => void) | undefined },
): Promise<boolean> {
  const verifier = new Verifier(desc, desc.mediaType);
  // Opened at once: a registry's upload POST overlaps the source's GET.
  const opening = dst.openSink(desc, options);
  opening.catch(() => undefined);
  let sink: BlobSink | undefined;
  const unable = new Error('the destination takes no chunks');
  let committed = false;
  try {
    const lent = await src
      .lend(
        desc,
        (chunk) => {
          const at = verifier.size;
          verifier.update(chunk);
          options.onBytes?.(verifier.size);
          // Checked before the last bytes go: a sink never holds all of a
          // wrong blob (a registry upload cut short commits nothing).
          if (verifier.size === desc.size) verifier.finish();
          if (sink !== undefined) return sink.write(chunk, at);
          // Writes queued behind the opening go out in order.
          return opening.then((s) => {
            if (s === undefined) throw unable;
            sink = s;
            return s.write(chunk, at);
          });
        },
        options,
      )
      .catch((err: unknown) => {
        if (err === unable) return false;
        throw err;
      });
    if (!lent) return false;
    // A blob shorter than its descriptor (or empty) is checked here.
    if (verifier.size < desc.size || desc.size === 0) verifier.finish();
    sink ??= await opening;
    if (sink === undefined) return false;
    await sink.commit();
    committed = true;
    return true;
  } finally {
    if (!committed) {
      const opened = await opening.catch(() => undefined);
      await opened?.abort();
    }
  }
}

/**
 * both waits for two starts made together. When one fails, what the other
 * started is given back (`undoA`, `undoB`) and the first failure in
 * argument order is thrown.
 */
async function both<A, B>(
  a: Promise<A>,
  b: Promise<B>,
  undoA: (a: A) => unknown,
  undoB: (b: B) => unknown,
): Promise<[A, B]> {
  const [ra, rb] = await Promise.allSettled([a, b]);
  if (ra.status === 'fulfilled' && rb.status === 'fulfilled') return [ra.value, rb.value];
  if (ra.status === 'fulfilled') await undoA(ra.value);
  if (rb.status === 'fulfilled') await undoB(rb.value);
  throw ra.status === 'rejected' ? ra.reason : (rb as PromiseRejectedResult).reason;
}

class CopyRun {
  readonly #src: Target;
  readonly #dst: Target;
  readonly #options: CopyOptions;
  readonly #limiter: Limiter;
  readonly #nodes = new Map<string, Promise<void>>();
  readonly #kinds = new Map<string, BlobKind>();
  /** #aside holds manifest reads made ahead of need, awaited before run() ends. */
  readonly #aside: Promise<unknown>[] = [];
  readonly #controller = new AbortController();
  readonly #signal: AbortSignal;
  readonly #mountFrom: string | undefined;
  readonly #rootTag: { digest: string; tag: string } | undefined;
  /** #recheck descends into manifests the destination has, pushing what they miss. */
  readonly #recheck: boolean;
  #firstError: { error: unknown } | undefined;
  /** tagged says whether the root was pushed under its tag (a {@link TagPusher}). */
  tagged = false;

  constructor(
    src: Target,
    dst: Target,
    options: CopyOptions,
    rootTag?: { digest: string; tag: string },
    recheck = false,
  ) {
    this.#src = src;
    this.#dst = dst;
    this.#options = options;
    this.#rootTag = rootTag;
    this.#recheck = recheck;
    this.#limiter = new Limiter(options.concurrency ?? 4);
    this.#signal =
      options.signal === undefined
        ? this.#controller.signal
        : AbortSignal.any([options.signal, this.#controller.signal]);
    this.#mountFrom =
      isMounter(src) &&
      isMounter(dst) &&
      src.registryHost === dst.registryHost &&
      src.repository !== dst.repository
        ? src.repository
        : undefined;
  }

  /** run copies the graph under `root`; on the first failure it cancels the rest and waits for it. */
  async run(root: Descriptor): Promise<void> {
    try {
      await this.#node(root);
      // Reads made beside a manifest the destination had.
      await Promise.allSettled(this.#aside);
    } catch (err) {
      this.#controller.abort(err);
      await Promise.allSettled([...this.#nodes.values(), ...this.#aside]);
      throwIfAborted(this.#options.signal);
      // The first failure in time is the cause; later ones are its cancellations.
      throw this.#firstError === undefined ? err : this.#firstError.error;
    }
  }

  #node(desc: Descriptor): Promise<void> {
    let p = this.#nodes.get(desc.digest);
    if (p === undefined) {
      p = this.#visit(desc);
      // Siblings may fail first; the rejection is reported through run().
      p.catch((error: unknown) => {
        this.#firstError ??= { error };
        this.#controller.abort(error);
      });
      this.#nodes.set(desc.digest, p);
    }
    return p;
  }

  /** #skip reports `desc` as not copied: a progress event, then the onSkipped hook. */
  async #skip(desc: Descriptor): Promise<void> {
    this.#options.progress?.emit('progress', {
      type: 'blob-skipped',
      id: desc.digest,
      digest: desc.digest,
      size: desc.size,
      kind: kindOf(desc, this.#kinds),
    });
    await this.#options.onSkipped?.(desc);
  }

  async #visit(desc: Descriptor): Promise<void> {
    const io = { signal: this.#signal };
    throwIfAborted(this.#signal);
    const o = this.#options;
    if ((await o.preCopy?.(desc)) === 'skip') return;
    if (!o.copyForeignLayers && isForeign(desc)) {
      await this.#skip(desc);
      return;
    }
    const present = this.#limiter.run(() => this.#dst.exists(desc, io));
    present.catch(() => undefined);
    if (isManifestMediaType(desc.mediaType)) {
      // The manifest is read while the destination is asked whether it has
      // it: a present one wastes a small read (none for a root a registry
      // resolved, whose bytes it holds), a missing one saves a round trip.
      const fetching = this.#limiter.run(() => fetchVerified(this.#src, desc, io));
      fetching.catch(() => undefined);
      this.#aside.push(fetching);
      const [has, bytes] = await Promise.all([present, fetching]).catch(async (err: unknown) => {
        // A present manifest is skipped whatever its read did.
        if (await present.catch(() => false)) return [true, undefined] as const;
        throw err;
      });
      if (has && (!this.#recheck || bytes === undefined)) {
        // A manifest present at the destination has its whole sub-graph
        // there: every writer pushes children before parents.
        await this.#skip(desc);
        return;
      }
      const children = successorsOf(bytes, desc);
      if (isImageManifestMediaType(desc.mediaType)) {
        children.forEach((c, i) => {
          if (!this.#kinds.has(c.digest)) this.#kinds.set(c.digest, i === 0 ? 'config' : 'layer');
        });
      }
      const settled = await Promise.allSettled(children.map((c) => this.#node(c)));
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
      throwIfAborted(this.#signal);
      const dst = this.#dst;
      const tag = this.#rootTag?.digest === desc.digest ? this.#rootTag.tag : undefined;
      if (tag !== undefined && isTagPusher(dst)) {
        await this.#limiter.run(() => dst.pushTagged(desc, bytes, tag, io));
        this.tagged = true;
      } else {
        await this.#limiter.run(() =>
          dst.push(desc, Readable.from([bytes], { objectMode: false }), io),
        );
      }
      o.progress?.emit('progress', { type: 'manifest-done', digest: desc.digest, size: desc.size });
      await o.postCopy?.(desc, bytes);
      return;
    }
    if (await present) {
      await this.#skip(desc);
      return;
    }
    const from = this.#mountFrom;
    if (from !== undefined && isMounter(this.#dst)) {
      const dst = this.#dst;
      if (await this.#limiter.run(() => dst.mount(desc, from, io))) {
        o.progress?.emit('progress', {
          type: 'blob-mounted',
          id: desc.digest,
          digest: desc.digest,
          size: desc.size,
          from,
        });
        await o.onMounted?.(desc, from);
        return;
      }
    }
    // A config is read whole by whoever uses the image (and by lading's own
    // readers, capped): one declared past the cap is refused before a byte
    // of it is fetched, as containers/image does, rather than spooled.
    if (kindOf(desc, this.#kinds) === 'config' && desc.size > MAX_MANIFEST_SIZE)
      throw new LadingError(
        ErrorCode.ManifestTooLarge,
        `config ${desc.digest} is ${desc.size} bytes, over the ${MAX_MANIFEST_SIZE}-byte cap`,
      );
    await this.#limiter.run(() => this.#transfer(desc));
    await o.postCopy?.(desc);
  }

  async #transfer(desc: Descriptor): Promise<void> {
    const io = { signal: this.#signal };
    const progress = this.#options.progress;
    const kind = kindOf(desc, this.#kinds);
    progress?.emit('progress', {
      type: 'blob-start',
      id: desc.digest,
      digest: desc.digest,
      total: desc.size,
      kind,
    });
    const onBytes =
      progress === undefined
        ? undefined
        : (bytes: number) =>
            progress.emit('progress', {
              type: 'blob-progress',
              id: desc.digest,
              bytes,
              total: desc.size,
              kind,
            });
    const src = this.#src;
    const dst = this.#dst;
    const once = async (): Promise<void> => {
      // A lender into a sink (a plain-HTTP registry into a layout or another
      // such registry) moves the bytes without a stream, in reused memory.
      const lent =
        isBlobLender(src) &&
        isSinkOpener(dst) &&
        src.canLend(desc) &&
        dst.canSink(desc) &&
        (await lendInto(src, dst, desc, { ...io, onBytes }));
      if (!lent) await this.#stream(desc, io, onBytes);
    };
    // A transfer cut short by a temporary failure (a registry's 503, a
    // dropped connection) starts over: the source is fetched again into a
    // new push. Both are re-openable; what a failed push began, it gave up.
    const retrier = isRetrier(dst) ? dst : isRetrier(src) ? src : undefined;
    if (retrier === undefined) await once();
    else
      await retrier.withRetry(once, io.signal, (attempt, delayMs, err) => {
        const reason = err instanceof Error ? err.message : String(err);
        progress?.emit('progress', { type: 'retry', id: desc.digest, attempt, delayMs, reason });
      });
    progress?.emit('progress', {
      type: 'blob-done',
      id: desc.digest,
      digest: desc.digest,
      size: desc.size,
      kind,
    });
  }

  /** #stream moves a blob as a stream: the source's fetch into the destination's push. */
  async #stream(
    desc: Descriptor,
    io: IoOptions,
    onBytes: ((bytes: number) => void) | undefined,
  ): Promise<void> {
    const dst = this.#dst;
    let source: Readable;
    let push: (content: Readable) => Promise<void>;
    if (isPushPreparer(dst)) {
      // The destination's push opens with a request of its own (an upload
      // POST): it goes out while the source's GET is in flight.
      const [fetched, prepared] = await both(
        this.#src.fetch(desc, io),
        dst.preparePush(desc, io),
        (s) => s.destroy(),
        (p) => p.cancel(),
      );
      source = fetched;
      push = (content) => prepared.push(content, io);
    } else {
      source = await this.#src.fetch(desc, io);
      push = (content) => dst.push(desc, content, io);
    }
    await feedVerified(push, desc, source, {
      ...io,
      ...(onBytes === undefined ? {} : { onBytes }),
    });
  }
}

/**
 * copy copies the graph `srcRef` names in `src` into `dst` and tags it
 * `dstRef` there, returning the root descriptor. Children are pushed before
 * their parents (layers and config before a manifest, manifests before their
 * index), so an interrupted copy never leaves a parent pointing at a missing
 * child and re-running it finishes the job: what `dst` already has is skipped
 * (a manifest hit skips its whole sub-graph; when the destination then
 * refuses to tag such a root, as a registry does whose copy lost a child,
 * the sub-graph is copied again node by node). Blobs are mounted instead of
 * copied between two repositories of one registry. Every byte is verified
 * against its digest on the way. `dstRef` is applied only once the root is
 * pushed, or with it where the destination can do both in one request (a
 * registry's PUT by tag); pass `undefined` (or a digest) to copy without
 * tagging.
 * @throws NOT_FOUND (unknown ref, or no manifest for the requested platform),
 *   DIGEST_MISMATCH, SIZE_MISMATCH, INVALID_MANIFEST, MANIFEST_TOO_LARGE,
 *   ABORTED, and whatever the targets throw.
 * @see docs/design.md (Targets and copy)
 */
export async function copy(
  src: Target,
  srcRef: string,
  dst: Target,
  dstRef: string | undefined,
  options: CopyOptions = {},
): Promise<Descriptor> {
  const io = { signal: options.signal };
  throwIfAborted(options.signal);
  // The root's manifest is read next (selectPlatform, or the copy itself).
  let root = await src.resolve(srcRef, { ...io, fetchNext: true });
  if (root.mediaType.startsWith('application/vnd.docker.distribution.manifest.v1+'))
    throw new LadingError(
      ErrorCode.UnsupportedMediaType,
      `${srcRef} is a Docker schema 1 manifest (${root.mediaType}), which lading does not read; push it again with a current client`,
    );
  if (options.platform !== undefined) {
    root = await selectPlatform(root, options.platform, (d) => fetchVerified(src, d, io));
  }
  const tag = dstRef !== undefined && dstRef !== '' && !isDigest(dstRef) ? dstRef : undefined;
  const run = new CopyRun(
    src,
    dst,
    options,
    tag === undefined ? undefined : { digest: root.digest, tag },
  );
  await run.run(root);
  throwIfAborted(options.signal);
  if (tag !== undefined && !run.tagged) {
    // The destination had the root already: tag it with the source's bytes
    // (which the source holds since resolve) in one PUT where it can.
    try {
      if (isTagPusher(dst)) await dst.pushTagged(root, await fetchVerified(src, root, io), tag, io);
      else await dst.tag(root, tag, io);
    } catch (err) {
      // A registry checks a manifest's children when it is tagged: one of
      // them went since the root was stored (a child manifest deleted by
      // digest). Copy the sub-graph again, node by node, and tag with it.
      throwIfAborted(options.signal);
      const again = new CopyRun(src, dst, options, { digest: root.digest, tag }, true);
      await again.run(root);
      if (!again.tagged) throw err;
    }
  }
  const { mediaType, digest, size } = root;
  const out: Descriptor = { mediaType, digest: parseDigest(digest), size };
  if (root.platform !== undefined) out.platform = root.platform;
  return out;
}

/** descriptorOf describes bytes already in memory. */
export function descriptorOf(bytes: Uint8Array, mediaType: string): Descriptor {
  return { mediaType, digest: digestOf(bytes), size: bytes.length };
}
