import { PassThrough, type Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { RawDeflater } from './deflate.js';
import { ErrorCode, LadingError } from './errors.js';
import { ZstdFrames } from './zstd-frames.js';

/** LayerCompression is how a layer blob is compressed. */
export type LayerCompression = 'gzip' | 'zstd' | 'none';

/** zstdNodeVersion is the first Node release line with zstd in `node:zlib` (also 23.8). */
export const zstdNodeVersion = '22.15';

interface ZstdZlib {
  createZstdDecompress?: (options?: object) => Transform;
  zstdCompressSync?: (data: Uint8Array, options?: object) => Buffer;
  zstdDecompressSync?: (data: Uint8Array, options?: object) => Buffer;
}

const zz = zlib as unknown as ZstdZlib;

/** zstdAvailable tells whether this Node has zstd in `node:zlib` (22.15+, 23.8+). */
export function zstdAvailable(): boolean {
  return typeof zz.createZstdDecompress === 'function' && typeof zz.zstdCompressSync === 'function';
}

/**
 * zstdUnsupported is the UNSUPPORTED error for zstd on a Node without it.
 * `what` says what was attempted ("compress a layer with zstd").
 */
export function zstdUnsupported(what: string): LadingError {
  return new LadingError(
    ErrorCode.Unsupported,
    `cannot ${what}: zstd needs Node ≥ ${zstdNodeVersion} (this is ${process.version})`,
  );
}

/** isZstdLayerMediaType tells whether layers of this type are zstd-compressed. */
export function isZstdLayerMediaType(mt: string | undefined): boolean {
  return mt?.endsWith('+zstd') === true;
}

/** layerCompressionOf tells how a layer of media type `mt` is compressed. */
export function layerCompressionOf(mt: string | undefined): LayerCompression {
  if (mt === undefined) return 'none';
  if (mt.endsWith('+gzip') || mt.endsWith('.tar.gzip')) return 'gzip';
  return isZstdLayerMediaType(mt) ? 'zstd' : 'none';
}

/**
 * sniffCompression tells from a blob's first bytes whether it is gzip
 * (`1f 8b`) or a zstd frame (`28 b5 2f fd`); anything else is `none`.
 */
export function sniffCompression(head: Uint8Array): LayerCompression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (
    head.length >= 4 &&
    head[0] === 0x28 &&
    head[1] === 0xb5 &&
    head[2] === 0x2f &&
    head[3] === 0xfd
  ) {
    return 'zstd';
  }
  return 'none';
}

/**
 * createDecompressor returns a Transform that decompresses a gzip or zstd
 * stream (several concatenated gzip members or zstd frames included). Data
 * after the last member or frame fails the stream, except zeros after gzip.
 * @throws UNSUPPORTED for zstd on a Node without it.
 */
export function createDecompressor(kind: 'gzip' | 'zstd'): Transform {
  // 1 MiB output chunks: fewer, larger writes for whoever reads the tar.
  if (kind === 'gzip') return strictGzip(zlib.createGunzip({ chunkSize: 1024 * 1024 }));
  if (typeof zz.createZstdDecompress !== 'function') throw zstdUnsupported('read a zstd layer');
  return strictZstd(zz.createZstdDecompress({ chunkSize: 1024 * 1024 }));
}

/** gzipGarbage is the error for data after the last gzip member that is not zero padding. */
function gzipGarbage(): Error {
  return Object.assign(new Error('data after the last gzip member'), { code: 'Z_DATA_ERROR' });
}

/**
 * strictGzip makes Node's gunzip refuse data after the last member that is
 * not all zeros, as GNU gzip and Go's reader do. Node stops at a zero byte
 * after a member, ends its readable side at once and drops the rest,
 * garbage included. Here that early end is held back until the input has
 * ended, and what Node consumed (`bytesWritten`) must cover the last
 * non-zero byte it was given, in whichever chunk it came.
 */
function strictGzip(d: zlib.Gunzip): Transform {
  let total = 0;
  let lastNonZero = -1;
  let finishing = false;
  const push = d.push.bind(d);
  d.push = (chunk: unknown, encoding?: BufferEncoding) =>
    chunk === null && !finishing ? false : push(chunk, encoding);
  const checked =
    (callback: (err?: Error | null, data?: unknown) => void) =>
    (err?: Error | null, data?: unknown) => {
      // (destroyed mid-chunk, zlib answers without having consumed it)
      if (!err && !d.destroyed && lastNonZero >= d.bytesWritten) callback(gzipGarbage());
      else callback(err, data);
    };
  const transform = d._transform.bind(d);
  const flush = d._flush.bind(d);
  d._transform = (chunk: Buffer, encoding, callback) => {
    for (let i = chunk.length - 1; i >= 0; i--) {
      if (chunk[i] !== 0) {
        lastNonZero = total + i;
        break;
      }
    }
    total += chunk.length;
    transform(chunk, encoding, checked(callback));
  };
  d._flush = (callback) => {
    flush(
      checked((err, data) => {
        finishing = true;
        callback(err, data);
      }),
    );
  };
  return d;
}

/**
 * strictZstd makes Node's zstd decompressor refuse bytes after the last
 * frame, as the zstd tool and Go's decoders do (Node drops them): every
 * chunk is followed through {@link ZstdFrames} before it is decompressed.
 * (Gzip gets {@link strictGzip}.)
 */
function strictZstd(d: Transform): Transform {
  const frames = new ZstdFrames();
  const transform = d._transform.bind(d);
  const flush = d._flush.bind(d);
  d._transform = (chunk: Buffer, encoding, callback) => {
    try {
      frames.scan(chunk);
    } catch (err) {
      callback(err as Error);
      return;
    }
    transform(chunk, encoding, callback);
  };
  d._flush = (callback) => {
    try {
      frames.end();
    } catch (err) {
      callback(err as Error);
      return;
    }
    flush(callback);
  };
  return d;
}

/**
 * decompressionError gives a failure of a {@link createDecompressor} stream
 * a code: a zlib (`Z_…`) or zstd (`ZSTD_error_…`) error means the bytes are
 * not the gzip or zstd stream their media type says — INVALID_LAYER
 * "`what` does not decompress: …". Anything else is answered as it is.
 */
export function decompressionError(e: unknown, what: string): unknown {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !(code.startsWith('Z_') || code.startsWith('ZSTD_error')))
    return e;
  const message = e instanceof Error ? e.message : code;
  return new LadingError(ErrorCode.InvalidLayer, `${what} does not decompress: ${message}`, {
    cause: e,
  });
}

/**
 * deferredStream returns a Readable at once that carries the stream `open`
 * resolves with, or fails with its error: a layer's `compressed()` is
 * synchronous, while fetching its blob is not.
 */
export function deferredStream(open: () => Promise<Readable>): Readable {
  const out = new PassThrough();
  open()
    .then((body) => pipeline(body, out))
    .catch((err: unknown) => {
      out.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  return out;
}

/**
 * layerTarStream is the tar inside `compressed`, a blob of a layer of media
 * type `mediaType`: decompressed for gzip and zstd, as is otherwise.
 * @throws UNSUPPORTED for a zstd layer on a Node without zstd (after
 *   destroying `compressed`).
 */
export function layerTarStream(compressed: Readable, mediaType: string): Readable {
  const kind = layerCompressionOf(mediaType);
  if (kind === 'none') return compressed;
  let decompress: Transform;
  try {
    decompress = createDecompressor(kind);
  } catch (err) {
    // Nothing will read the blob: close it (a connection, a file).
    compressed.on('error', () => undefined);
    compressed.destroy();
    throw err;
  }
  pipeline(compressed, decompress).catch(() => undefined);
  return decompress;
}

/** decompressSync is {@link createDecompressor} for bytes in memory (small layers). */
export function decompressSync(kind: 'gzip' | 'zstd', bytes: Uint8Array): Buffer {
  if (kind === 'gzip') {
    const { buffer, engine } = zlib.gunzipSync(bytes, { info: true }) as unknown as {
      buffer: Buffer;
      engine: zlib.Gunzip;
    };
    for (let i = bytes.length - 1; i >= engine.bytesWritten; i--)
      if (bytes[i] !== 0) throw gzipGarbage();
    return buffer;
  }
  if (typeof zz.zstdDecompressSync !== 'function') throw zstdUnsupported('read a zstd layer');
  const frames = new ZstdFrames();
  frames.scan(bytes);
  frames.end();
  return zz.zstdDecompressSync(bytes);
}

/** blockGzipSize is the uncompressed size of each block of a block gzip. */
export const blockGzipSize = 1024 * 1024;

/**
 * blockGzipHeader is the fixed 10-byte header of every member of a block
 * gzip (mtime 0, no name, XFL 0, OS 3 = Unix), so that its bytes never
 * depend on the machine.
 */
export const blockGzipHeader: Uint8Array = Uint8Array.from([
  0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03,
]);

/** blockGzipTrailer is the 8-byte trailer of a gzip member: CRC-32 and length, little-endian. */
export function blockGzipTrailer(crc: number, length: number): Buffer {
  const trailer = Buffer.allocUnsafe(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(length % 0x100000000, 4);
  return trailer;
}

const deflaters = new Map<number, RawDeflater>();

/**
 * blockGzipSync is the block gzip of `bytes` computed on this thread: a
 * series of gzip members (RFC 1952 §2.2), one per 1 MiB block, each
 * deflated on its own by libdeflate (WebAssembly) at `level`, 0–9. Every
 * gzip reader reads such a series as one stream (it is how BGZF and eStargz
 * are laid out). It gives the same bytes as the worker-thread block gzip of
 * `@lading/layers` at the same level, for any number of workers. Meant for
 * small layers held in memory.
 */
export function blockGzipSync(bytes: Uint8Array, level: number): Buffer {
  let d = deflaters.get(level);
  if (d === undefined) {
    d = new RawDeflater(level);
    deflaters.set(level, d);
  }
  const parts: Uint8Array[] = [];
  let off = 0;
  do {
    const block = bytes.subarray(off, off + blockGzipSize);
    parts.push(
      blockGzipHeader,
      d.deflate(block),
      blockGzipTrailer(zlib.crc32(block), block.length),
    );
    off += block.length;
  } while (off < bytes.length);
  return Buffer.concat(parts);
}

/** zstdLevelRange is the zstd levels lading accepts. */
export const zstdLevelRange = { min: 1, max: 22 } as const;

/** The slice of `node:zlib` that {@link zstdFramer} uses (its `zlib` argument). */
export interface ZstdFramerZlib {
  readonly constants: object;
  readonly zstdCompressSync?: (data: Uint8Array, options?: object) => Uint8Array;
  readonly ZstdCompress?: new (options?: object) => object;
}

/**
 * zstdFramer answers a function that compresses each call's bytes as one
 * whole zstd frame at `level`: the bytes of `zstdCompressSync` with an
 * output buffer the size of the frame (zstd compresses in one call and
 * records the content size in the frame header), but made by one native
 * context kept from frame to frame. A fresh `zstdCompressSync` per 1 MiB
 * block allocates and clears zstd's tables every time: at level 3 it took
 * 1.3–1.9× the time of a kept context (Node 22–26), and 400 frames on one
 * worker grew RSS by 19–53 MiB against 7–8 MiB.
 *
 * Node has no public call that compresses into a frame and keeps the
 * context, so this one calls the native handle of a `ZstdCompress` stream
 * the way Node's own synchronous path does (`_handle.writeSync` with
 * `ZSTD_e_end`, the sizes left in `_writeState`), without closing it after.
 * Where those are not there (another runtime, a later Node), each frame is
 * a fresh `zstdCompressSync`, with the same bytes.
 *
 * It refers to nothing outside itself (`zlib` is `node:zlib`): the worker
 * threads of `@lading/layers` splice its source.
 */
export function zstdFramer(zlib: ZstdFramerZlib, level: number): (bytes: Uint8Array) => Uint8Array {
  const c = zlib.constants as Record<string, number | undefined>;
  const endFrame = c.ZSTD_e_end ?? 2;
  const params = { [c.ZSTD_c_compressionLevel ?? 100]: level };
  // zstd's bound is n + n/256 + 64 KiB at most; this is above it for every n.
  const bound = (n: number) => Math.max(16384, n + (n >> 6) + 1024);
  interface Native {
    writeSync(
      flush: number,
      input: Uint8Array,
      inOff: number,
      inLen: number,
      out: Uint8Array,
      outOff: number,
      outLen: number,
    ): void;
  }
  interface Engine {
    readonly _handle?: Native | null;
    readonly _writeState?: unknown;
    readonly destroyed?: boolean;
    destroy(): void;
    on(event: 'error', listener: (err: unknown) => void): unknown;
  }
  let engine: Engine | undefined;
  let out = new Uint8Array(0);
  const oneShot = (bytes: Uint8Array): Uint8Array => {
    if (typeof zlib.zstdCompressSync !== 'function') throw new Error('no zstd in node:zlib');
    const out = zlib.zstdCompressSync(bytes, { chunkSize: bound(bytes.length), params });
    // A view into a larger buffer is copied: a worker transfers the buffer.
    return out.byteOffset === 0 && out.buffer.byteLength === out.byteLength
      ? out
      : new Uint8Array(out);
  };
  return (bytes) => {
    if (engine === undefined || engine.destroyed === true) {
      if (typeof zlib.ZstdCompress !== 'function') return oneShot(bytes);
      engine = new zlib.ZstdCompress({ params }) as Engine;
      // An error the handle reports destroys the stream (checked below).
      engine.on('error', () => undefined);
    }
    const handle = engine._handle;
    const state = engine._writeState;
    if (typeof handle?.writeSync !== 'function' || !(state instanceof Uint32Array)) {
      return oneShot(bytes);
    }
    const n = bytes.length;
    const size = bound(n);
    if (out.length < size) out = new Uint8Array(size);
    handle.writeSync(endFrame, bytes, 0, n, out, 0, size);
    const [outLeft = 0, inLeft = 0] = state;
    if (engine.destroyed === true) throw new Error('zstd failed to compress a frame');
    if (outLeft === 0 || inLeft !== 0) {
      // Not finished in one call (never seen with this output size): the
      // context is mid-frame; drop it and make the frame afresh.
      engine.destroy();
      engine = undefined;
      return oneShot(bytes);
    }
    return out.slice(0, size - outLeft);
  };
}

const framers = new Map<number, (bytes: Uint8Array) => Uint8Array>();

/**
 * zstdFrameSync compresses `bytes` as one zstd frame at `level` (the frames
 * of a block zstd, concatenated, are a valid zstd stream), with this
 * thread's {@link zstdFramer} for that level: the worker threads of
 * `@lading/layers` make frames with their own, the same bytes.
 * @throws UNSUPPORTED on a Node without zstd.
 */
export function zstdFrameSync(bytes: Uint8Array, level: number): Buffer {
  if (typeof zz.zstdCompressSync !== 'function') throw zstdUnsupported('compress with zstd');
  let frame = framers.get(level);
  if (frame === undefined) {
    frame = zstdFramer(zlib, level);
    framers.set(level, frame);
  }
  const out = frame(bytes);
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}
