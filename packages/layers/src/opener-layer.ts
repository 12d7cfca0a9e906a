import { createReadStream } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import { closeSync, openSync, readSync } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Descriptor, Digest, Layer, MediaTypeString } from '@lading/core';
import { resolveCompression, type ResolvedCompression } from './compression.js';
import {
  drain,
  startPass,
  type PassOutput,
  type PassResult,
  type PassSource,
} from './internal/pass.js';
import { defaultMediaType, descriptorOf, type LayerOptions } from './stream-layer.js';

/** Opener opens a fresh stream over a layer's content each time it is called. */
export type Opener = () => Readable | Promise<Readable>;

/** OpenerLayerOptions configure {@link layerFromOpener}. */
export interface OpenerLayerOptions extends LayerOptions {
  /** compressed says the opened streams are already gzip (passed through, never recompressed). */
  readonly compressed?: boolean;
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
 * content: an uncompressed tar, or with `{ compressed: true }` a gzipped one.
 * @see docs/design.md (Layer)
 * @throws INVALID_ARGUMENT for bad compression options.
 */
export function layerFromOpener(open: Opener, options: OpenerLayerOptions = {}): OpenerLayer {
  const gzipped = options.compressed === true;
  return new OpenerLayer(
    async () => ({ stream: await open(), gzipped }),
    defaultMediaType(options, gzipped || (options.compression ?? 'gzip') === 'gzip'),
    options,
  );
}

/** FileLayerOptions configure {@link layerFromFile}. */
export interface FileLayerOptions extends LayerOptions {
  /** compressed says whether the file is gzip; detected from its magic bytes when omitted. */
  readonly compressed?: boolean;
}

const readChunk = 1024 * 1024;

async function isGzipFile(path: string): Promise<boolean> {
  const fh = await openFile(path, 'r');
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await fh.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

function isGzipFileSync(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(2);
    return readSync(fd, head, 0, 2, 0) === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    closeSync(fd);
  }
}

/**
 * layerFromFile makes a re-openable layer from a tar or tar.gz file (gzip is
 * detected by its magic bytes at open time; gzip input is never
 * recompressed).
 *
 * The factory does no I/O, except with `compression: 'none'` and no
 * `compressed` option, where it reads the file's first two bytes to know the
 * media type.
 */
export function layerFromFile(path: string, options: FileLayerOptions = {}): OpenerLayer {
  let gzipKnown = options.compressed;
  if (
    gzipKnown === undefined &&
    options.compression === 'none' &&
    options.mediaType === undefined
  ) {
    gzipKnown = isGzipFileSync(path);
  }
  const mediaType = defaultMediaType(
    options,
    gzipKnown === true || (options.compression ?? 'gzip') === 'gzip',
  );
  return new OpenerLayer(
    async () => {
      const gzipped = gzipKnown ?? (await isGzipFile(path));
      return { stream: createReadStream(path, { highWaterMark: readChunk }), gzipped };
    },
    mediaType,
    options,
  );
}
