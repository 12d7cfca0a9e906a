import { createReadStream } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import { closeSync, openSync, readSync } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Descriptor, Digest, Layer, MediaTypeString } from '@lading/core';
import { sniffCompression } from '@lading/core/internal';
import { resolveCompression, type ResolvedCompression } from './compression.js';
import {
  drain,
  startPass,
  type PassOutput,
  type PassResult,
  type PassSource,
} from './internal/pass.js';
import {
  defaultMediaType,
  descriptorOf,
  precompressedOf,
  type LayerOptions,
} from './stream-layer.js';

/** Opener opens a fresh stream over a layer's content each time it is called. */
export type Opener = () => Readable | Promise<Readable>;

/** OpenerLayerOptions configure {@link layerFromOpener}. */
export interface OpenerLayerOptions extends LayerOptions {
  /**
   * compressed says the opened streams are already gzip (`true` or
   * `'gzip'`) or zstd (passed through, never recompressed).
   */
  readonly compressed?: boolean | 'gzip' | 'zstd';
}

/**
 * OpenerLayer is a re-openable layer: each `compressed()` or `uncompressed()`
 * opens its source again. The first pass that completes memoizes digest,
 * diffId and size; awaiting them with no pass in flight runs a hashing pass.
 * A failed pass leaves nothing memoized, so it may be retried.
 */
export class OpenerLayer implements Layer {
  readonly mediaType: MediaTypeString;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly #open: () => Promise<PassSource>;
  readonly #compression: ResolvedCompression;
  #known: PassResult | undefined;
  #inFlight = new Set<Promise<PassResult>>();
  #hashing: Promise<PassResult> | undefined;

  /** @internal built by {@link layerFromOpener}, {@link layerFromFile} and the directory layers. */
  constructor(
    open: () => Promise<PassSource>,
    mediaType: MediaTypeString,
    options: LayerOptions = {},
  ) {
    this.#open = open;
    this.#compression = resolveCompression(options);
    this.mediaType = mediaType;
    if (options.annotations !== undefined) this.annotations = options.annotations;
  }

  digest(): Promise<Digest> {
    return this.#values().then((r) => r.digest);
  }
  diffId(): Promise<Digest> {
    return this.#values().then((r) => r.diffId);
  }
  size(): Promise<number> {
    return this.#values().then((r) => r.size);
  }

  /** compressed opens the source and returns the blob. */
  compressed(): Readable {
    return this.#pass('compressed').stream;
  }

  /** uncompressed opens the source and returns the tar. */
  uncompressed(): Readable {
    return this.#pass('uncompressed').stream;
  }

  /** knownDescriptor is the descriptor once a pass has completed, undefined before. */
  knownDescriptor(): Descriptor | undefined {
    if (this.#known === undefined) return undefined;
    return descriptorOf(this.mediaType, this.#known, this.annotations);
  }

  #pass(output: PassOutput): { stream: Readable; result: Promise<PassResult> } {
    const pass = startPass(this.#open, output, this.#compression);
    const r = pass.result;
    this.#inFlight.add(r);
    r.then(
      (v) => {
        this.#known ??= v;
        this.#inFlight.delete(r);
      },
      () => {
        this.#inFlight.delete(r);
      },
    );
    return pass;
  }

  async #values(): Promise<PassResult> {
    if (this.#known !== undefined) return this.#known;
    // Wait on a consumer's pass when one is running; if it fails, hash ourselves.
    for (const r of [...this.#inFlight]) {
      try {
        return await r;
      } catch {
        // fall through to the next pass, or our own
      }
    }
    // A pass may have completed while we waited.
    const known = this.#known as PassResult | undefined;
    if (known !== undefined) return known;
    this.#hashing ??= (async () => {
      const pass = this.#pass('compressed');
      await drain(pass.stream);
      return pass.result;
    })();
    const p = this.#hashing;
    try {
      return await p;
    } finally {
      // Failed or not, a later call either reads #known or retries.
      if (this.#hashing === p) this.#hashing = undefined;
    }
  }
}

/**
 * layerFromOpener makes a re-openable layer from a function that opens its
 * content: an uncompressed tar, or with `{ compressed: true }` (or
 * `'zstd'`) an already-compressed one.
 * @see docs/design.md (Layer)
 * @throws INVALID_ARGUMENT for bad compression options; UNSUPPORTED for
 *   zstd compression on a Node without it.
 */
export function layerFromOpener(open: Opener, options: OpenerLayerOptions = {}): OpenerLayer {
  const pre = precompressedOf(options.compressed);
  return new OpenerLayer(
    async () => ({ stream: await open(), gzipped: pre === 'gzip', zstd: pre === 'zstd' }),
    defaultMediaType(options, pre),
    options,
  );
}

/** FileLayerOptions configure {@link layerFromFile}. */
export interface FileLayerOptions extends LayerOptions {
  /**
   * compressed says whether the file is gzip (`true` or `'gzip'`), zstd or
   * a plain tar (`false`); detected from its magic bytes when omitted.
   */
  readonly compressed?: boolean | 'gzip' | 'zstd';
}

const readChunk = 1024 * 1024;

async function sniffFile(path: string): Promise<'gzip' | 'zstd' | undefined> {
  const fh = await openFile(path, 'r');
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    return precompressedKind(head.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/** sniffFileSync is {@link sniffFile} at creation; undefined when the file cannot be read yet. */
function sniffFileSync(path: string): 'gzip' | 'zstd' | false | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined; // opening again at read time reports the error
  }
  try {
    const head = Buffer.alloc(4);
    return precompressedKind(head.subarray(0, readSync(fd, head, 0, 4, 0))) ?? false;
  } finally {
    closeSync(fd);
  }
}

function precompressedKind(head: Uint8Array): 'gzip' | 'zstd' | undefined {
  const kind = sniffCompression(head);
  return kind === 'none' ? undefined : kind;
}

/**
 * layerFromFile makes a re-openable layer from a tar, tar.gz or tar.zst file
 * (gzip and zstd are detected by their magic bytes and never recompressed;
 * a plain tar is compressed as the options say).
 *
 * Unless `compressed` or `mediaType` is given, the factory reads the file's
 * first four bytes synchronously to know the media type (a file that cannot
 * be opened yet is sniffed again, and its error reported, when it is read).
 */
export function layerFromFile(path: string, options: FileLayerOptions = {}): OpenerLayer {
  let known: 'gzip' | 'zstd' | false | undefined =
    options.compressed === undefined ? undefined : (precompressedOf(options.compressed) ?? false);
  if (known === undefined && options.mediaType === undefined) known = sniffFileSync(path);
  const mediaType = defaultMediaType(options, known === false ? undefined : known);
  return new OpenerLayer(
    async () => {
      const kind =
        known === undefined ? await sniffFile(path) : known === false ? undefined : known;
      return {
        stream: createReadStream(path, { highWaterMark: readChunk }),
        gzipped: kind === 'gzip',
        zstd: kind === 'zstd',
      };
    },
    mediaType,
    options,
  );
}
