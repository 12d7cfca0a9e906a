import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdtemp, readdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortedError,
  DigestMismatchError,
  ErrorCode,
  HashingStream,
  LadingError,
  LocalPathError,
  createDecompressor,
  layerCompressionOf,
  SizeMismatchError,
  digestAlgorithm,
  isLadingError,
  throwIfAborted,
  type Digest,
  type Layer,
  type MediaTypeString,
} from '@lading/core';
import { Limiter, decompressionError, makeDirectory } from '@lading/core/internal';
import { extract, type ExtractOptions } from './extract.js';

/** ExtractVerifiedOptions configure {@link extractVerified}. */
export interface ExtractVerifiedOptions extends ExtractOptions {
  /** concurrency is how many layers download at once into a non-empty `dir` (default 4). */
  readonly concurrency?: number;
}

/**
 * SpooledLayer is a layer whose tar has been verified and written to a
 * spool file; extract only reads its uncompressed() side.
 */
class SpooledLayer implements Layer {
  readonly mediaType: MediaTypeString;
  readonly #file: string;
  readonly #of: Layer;

  constructor(of: Layer, file: string) {
    this.#of = of;
    this.#file = file;
    this.mediaType = of.mediaType;
  }
  digest(): Promise<Digest> {
    return this.#of.digest();
  }
  diffId(): Promise<Digest> {
    return this.#of.diffId();
  }
  size(): Promise<number> {
    return this.#of.size();
  }
  compressed(): Readable {
    throw new LadingError(
      ErrorCode.Unsupported,
      'a spooled layer only serves its verified tar (uncompressed())',
    );
  }
  uncompressed(): Readable {
    return createReadStream(this.#file);
  }
}

/** under is `dir`/`name` as bytes, for a name read from a directory as bytes. */
function under(dir: string, name: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${dir}/`), name]);
}

function typedIo(e: unknown, what: string): unknown {
  if (isLadingError(e)) return e;
  if (typeof e === 'object' && e !== null && 'syscall' in e) {
    const message = e instanceof Error ? e.message : 'file-system error';
    return new LadingError(ErrorCode.Io, `${what}: ${message}`, { cause: e });
  }
  return e;
}

/**
 * spoolError gives a failure while spooling layer `index` a code: the
 * layer's own typed errors pass, zlib and zstd errors mean the blob is not what its
 * media type says (INVALID_LAYER), undici's a transfer cut short
 * (NETWORK), file-system errors IO; an abort passes as is.
 */
function spoolError(e: unknown, index: number): unknown {
  if (isLadingError(e)) return e;
  const typed = decompressionError(e, `layer ${index}`);
  if (typed !== e) return typed;
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : 'unknown error';
  if (typeof code === 'string' && code.startsWith('UND_ERR')) {
    return new LadingError(ErrorCode.Network, `reading layer ${index}: ${message}`, { cause: e });
  }
  return typedIo(e, `spooling layer ${index}`);
}

/**
 * spool reads `layer` once, hashing its compressed bytes and its tar, and
 * writes the tar to `file`; it resolves only when the blob's digest and
 * size and the tar's diffId are the ones the layer claims.
 * @throws DIGEST_MISMATCH, SIZE_MISMATCH, INVALID_LAYER (not gzip or zstd), IO
 */
async function spool(
  layer: Layer,
  index: number,
  file: string,
  signal: AbortSignal,
): Promise<void> {
  // Ask for the claims first (a remote layer knows them without I/O) but
  // await them only after the bytes flowed: a single-pass layer settles then.
  const claims = claimsOf(layer);
  const { stages, blob, tar } = hashStages(layer);
  try {
    await pipeline([...stages, createWriteStream(file, { flags: 'wx', mode: 0o600 })], {
      signal,
    });
  } catch (e) {
    throw spoolError(e, index);
  }
  checkClaims(blob, tar, await claims, index);
}

type Claims = readonly [digest: Digest, size: number, diffId: Digest];

/** claimsOf asks for a layer's digest, size and diffId without awaiting them (see {@link spool}). */
function claimsOf(layer: Layer): Promise<Claims> {
  const claims = Promise.all([layer.digest(), layer.size(), layer.diffId()]);
  claims.catch(() => undefined);
  return claims;
}

/** checkClaims throws when what flowed is not what the layer claims. */
function checkClaims(blob: HashingStream, tar: HashingStream, claims: Claims, index: number): void {
  const [digest, size, diffId] = claims;
  const what = `layer ${index}`;
  if (blob.size !== size) throw new SizeMismatchError(size, blob.size, what);
  if (blob.digest !== digest) throw new DigestMismatchError(digest, String(blob.digest), what);
  if (tar.digest !== diffId) {
    throw new DigestMismatchError(diffId, String(tar.digest), `${what} diffId`, { diffId: true });
  }
}

/** hashStages is a layer's compressed bytes → blob hash → (gunzip) → tar hash. */
function hashStages(layer: Layer): {
  stages: (Readable | Transform)[];
  blob: HashingStream;
  tar: HashingStream;
} {
  const known = layer.knownDescriptor?.();
  const blob = new HashingStream(known === undefined ? 'sha256' : digestAlgorithm(known.digest));
  const tar = new HashingStream('sha256');
  // The decompressor first: without zstd in this Node it throws, and the
  // blob must not have been opened for nothing.
  const compression = layerCompressionOf(layer.mediaType);
  const decompress = compression === 'none' ? undefined : createDecompressor(compression);
  const stages: (Readable | Transform)[] = [layer.compressed(), blob];
  if (decompress !== undefined) stages.push(decompress);
  stages.push(tar);
  return { stages, blob, tar };
}

/**
 * CheckedLayer serves a layer's tar through its hashes; the stream fails at
 * its end, before it finishes, when digest, size or diffId are not the
 * claimed ones (so an extraction into a private staging directory fails).
 */
class CheckedLayer extends SpooledLayer {
  readonly #of: Layer;
  readonly #index: number;
  readonly #onError: (e: unknown) => void;
  constructor(of: Layer, index: number, onError: (e: unknown) => void) {
    super(of, '');
    this.#of = of;
    this.#index = index;
    this.#onError = onError;
  }
  override uncompressed(): Readable {
    const claims = claimsOf(this.#of);
    const { stages, blob, tar } = hashStages(this.#of);
    const index = this.#index;
    const check = new Transform({
      transform(chunk: Buffer, _encoding, callback): void {
        callback(null, chunk);
      },
      flush(callback): void {
        claims.then(
          (c) => {
            try {
              checkClaims(blob, tar, c, index);
              callback();
            } catch (e) {
              callback(e as Error);
            }
          },
          (e: unknown) => {
            callback(e instanceof Error ? e : new Error(String(e)));
          },
        );
      },
    });
    // The tar reader may report only that its input was destroyed: hand the
    // real cause (a mismatch, a transfer or gzip error) to the caller first.
    pipeline([...stages, check]).catch((e: unknown) => {
      const code = (e as { code?: unknown } | null)?.code;
      if (code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ABORT_ERR') return;
      this.#onError(spoolError(e, index));
    });
    return check;
  }
}

type DestinationState = 'absent' | 'empty' | 'full';

/** inspect tells what is at `dest` now, following a symlinked directory. */
async function inspect(dest: string): Promise<{ state: DestinationState; path: string }> {
  const st = await lstat(dest).catch((e: unknown) => {
    if ((e as { code?: unknown }).code === 'ENOENT') return undefined;
    throw e;
  });
  if (st === undefined) return { state: 'absent', path: dest };
  const path = st.isSymbolicLink() ? await realpath(dest) : dest;
  if (!(await stat(path)).isDirectory()) {
    throw new LocalPathError(
      ErrorCode.Conflict,
      `cannot unpack into ${dest}: it exists and is not a directory`,
      dest,
    );
  }
  return { state: (await readdir(path)).length === 0 ? 'empty' : 'full', path };
}

/**
 * extractVerified applies `layers` to `dir` like {@link extract}, but no
 * byte of a layer reaches `dir` before the whole layer was verified (blob
 * digest, size and diffId), and a failed call leaves `dir` as it was.
 * When `dir` is absent or an empty directory, layers stream (one pass each,
 * as fast as {@link extract}) into a private staging directory — a hidden
 * sibling of an absent `dir`, a hidden child of an empty one — whose tree
 * is moved into place once every layer checked out; a failure discards it.
 * When `dir` has content, each layer is first read into a spool file next
 * to `dir` (up to `concurrency` at a time) and checked, and only once all
 * are verified is the first applied (a verified layer that then fails to
 * apply, say with UNSAFE_PATH, can leave the layers before it applied).
 * Staging and spool files are removed in every case.
 * @throws DIGEST_MISMATCH or SIZE_MISMATCH for a layer that is not what it claims;
 *   INVALID_ARGUMENT for a `concurrency` that is not a number;
 *   the codes of {@link extract} otherwise.
 */
export async function extractVerified(
  layers: Iterable<Layer> | AsyncIterable<Layer>,
  dir: string,
  options: ExtractVerifiedOptions = {},
): Promise<void> {
  throwIfAborted(options.signal);
  const list: Layer[] = [];
  for await (const layer of layers) list.push(layer);
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 4));
  // Layers spool in order, `concurrency` at a time (Infinity: all at once);
  // a NaN bound fails here, before anything is created.
  const limiter = new Limiter(Math.min(concurrency, Math.max(1, list.length)));
  const dest = resolve(dir);
  let created: string | undefined;
  let work: string | undefined;
  const stop = new AbortController();
  let failure: { error: unknown } | undefined;
  const fail = (error: unknown): void => {
    failure ??= { error };
    stop.abort(error);
  };
  const onAbort = (): void => {
    fail(new AbortedError(options.signal?.reason));
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let spooled: Promise<void>[] = [];
  let state: DestinationState = 'full';
  let target = dest;
  try {
    const found = await inspect(dest);
    state = found.state;
    target = found.path;
    if (state !== 'full') {
      // Nothing to keep: stream each layer, checked as it ends, into a
      // private staging directory (beside an absent DIR, inside an empty
      // one: same filesystem, and DIR keeps its owner and mode), then move
      // the tree into place. A failure discards the staging directory.
      const home = state === 'absent' ? dirname(found.path) : found.path;
      if (state === 'absent') created = await makeDirectory(home);
      work = await mkdtemp(join(home, `.${basename(found.path)}.lading-`));
      const staging = join(work, 'root');
      const checked = list.map((layer, i) => new CheckedLayer(layer, i + 1, fail));
      await extract(checked, staging, { ...options, signal: stop.signal });
      if (state === 'absent') await rename(staging, dest);
      else {
        // As bytes: a name need not be UTF-8.
        for (const name of await readdir(staging, { encoding: 'buffer' })) {
          await rename(under(staging, name), under(found.path, name));
        }
      }
      return;
    }
    const parent = dirname(found.path);
    created = await makeDirectory(parent);
    work = await mkdtemp(join(parent, `.${basename(found.path)}.lading-`));
    const spoolDir = work;
    const files = list.map((_, i) => join(spoolDir, `layer-${String(i + 1)}.tar`));
    spooled = list.map((layer, i) =>
      limiter.run(async () => {
        try {
          if (stop.signal.aborted) throw stop.signal.reason;
          await spool(layer, i + 1, files[i] ?? '', stop.signal);
        } catch (e) {
          fail(e);
          throw e;
        }
      }),
    );
    for (const p of spooled) p.catch(() => undefined);
    await Promise.all(spooled);
    async function* verified(): AsyncGenerator<Layer> {
      for (const [i, layer] of list.entries()) {
        const file = files[i] ?? '';
        await spooled[i];
        yield new SpooledLayer(layer, file);
        await rm(file, { force: true });
      }
    }
    await extract(verified(), target, { ...options, signal: stop.signal });
  } catch (e) {
    fail(e);
    await Promise.allSettled(spooled);
    if (state === 'empty') {
      // Only a failed move can have put entries there: take them out again.
      for (const name of await readdir(target, { encoding: 'buffer' }).catch(() => [])) {
        await rm(under(target, name), { recursive: true, force: true });
      }
    }
    if (created !== undefined) await rm(created, { recursive: true, force: true });
    // The first failure is the cause; an ABORTED that it triggered is not.
    throw typedIo(failure?.error ?? e, `unpacking into ${dest}`);
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  }
}
