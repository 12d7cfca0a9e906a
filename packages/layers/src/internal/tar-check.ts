import { Transform, type TransformCallback } from 'node:stream';
import { ErrorCode, LadingError } from '@lading/core';

const block = 512;
// A PAX header body larger than this is skipped unparsed (its size record,
// if any, is then not seen); real ones are a few hundred bytes.
const maxPaxBody = 64 * 1024;

function invalidLayer(message: string): LadingError {
  return new LadingError(ErrorCode.InvalidLayer, message);
}

function isZero(b: Buffer): boolean {
  for (const x of b) if (x !== 0) return false;
  return true;
}

/** numeric reads a tar number field: octal text, or base-256 when the high bit is set. */
function numeric(b: Buffer, off: number, len: number): number {
  const first = b[off] ?? 0;
  if ((first & 0x80) !== 0) {
    let n = first & 0x7f;
    for (let i = off + 1; i < off + len; i++) n = n * 256 + (b[i] ?? 0);
    return n;
  }
  // Octal digits, with leading spaces and a NUL or space terminator.
  let i = off;
  const end = off + len;
  while (i < end && b[i] === 0x20) i++;
  let n = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = b[i] ?? 0;
    if (c === 0 || c === 0x20) break;
    if (c < 0x30 || c > 0x37) return Number.NaN;
    n = n * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) {
    const c = b[i] ?? 0;
    if (c !== 0 && c !== 0x20) return Number.NaN;
  }
  return digits === 0 ? 0 : n;
}

function checksumOk(h: Buffer): boolean {
  const stored = numeric(h, 148, 8);
  let unsigned = 0;
  for (let i = 0; i < block; i++) unsigned += h[i] ?? 0;
  let field = 0;
  for (let i = 148; i < 156; i++) field += h[i] ?? 0;
  // The checksum is computed with its own field as eight spaces.
  unsigned += 8 * 0x20 - field;
  if (stored === unsigned) return true;
  // Some old tars summed signed bytes.
  let signed = 0;
  for (let i = 0; i < block; i++) {
    const x = i >= 148 && i < 156 ? 0x20 : (h[i] ?? 0);
    signed += x > 127 ? x - 256 : x;
  }
  return stored === signed;
}

/**
 * TarScanner follows the block structure of a tar stream without keeping
 * its data: headers (checksums, sizes, PAX `size` records), entry data and
 * its padding, and the end-of-archive marker (two zero blocks). It tells
 * whether the bytes seen so far form a complete archive, and what a reader
 * may add to a stream that ended cleanly after an entry's data.
 */
export class TarScanner {
  #offset = 0;
  #header = Buffer.alloc(block);
  #filled = 0;
  #data = 0;
  #pad = 0;
  #zeros = 0;
  #ended = false;
  #entries = 0;
  #pax: Buffer[] | undefined;
  #paxSize: number | undefined;

  /** update takes the next bytes. @throws INVALID_LAYER for a block that is not a tar header. */
  update(chunk: Uint8Array): void {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    let off = 0;
    while (off < buf.length && !this.#ended) {
      if (this.#data > 0) {
        const n = Math.min(this.#data, buf.length - off);
        this.#pax?.push(buf.subarray(off, off + n));
        this.#data -= n;
        off += n;
        if (this.#data === 0 && this.#pax !== undefined) this.#endPax();
        continue;
      }
      if (this.#pad > 0) {
        const n = Math.min(this.#pad, buf.length - off);
        this.#pad -= n;
        off += n;
        continue;
      }
      const n = Math.min(block - this.#filled, buf.length - off);
      buf.copy(this.#header, this.#filled, off, off + n);
      this.#filled += n;
      off += n;
      if (this.#filled === block) {
        this.#filled = 0;
        this.#onHeader(this.#offset + off - block);
      }
    }
    this.#offset += buf.length;
  }

  #onHeader(at: number): void {
    const h = this.#header;
    if (isZero(h)) {
      this.#zeros++;
      if (this.#zeros >= 2) this.#ended = true;
      return;
    }
    this.#zeros = 0;
    if (!checksumOk(h)) {
      throw invalidLayer(
        `the layer is not a tar archive: the block at byte ${at} is not a valid tar header`,
      );
    }
    const type = String.fromCharCode(h[156] ?? 0);
    let size = numeric(h, 124, 12);
    if (Number.isNaN(size)) {
      throw invalidLayer(`the layer is not a tar archive: bad size in the header at byte ${at}`);
    }
    if (this.#paxSize !== undefined && type !== 'x' && type !== 'g') {
      size = this.#paxSize;
      this.#paxSize = undefined;
    }
    // Directories carry no data whatever their size field says (as tar-stream reads them).
    if (type === '5') size = 0;
    this.#entries++;
    this.#data = size;
    this.#pad = size % block === 0 ? 0 : block - (size % block);
    if (type === 'x' && size > 0 && size <= maxPaxBody) this.#pax = [];
  }

  #endPax(): void {
    const body = Buffer.concat(this.#pax ?? []).toString('utf8');
    this.#pax = undefined;
    const m = /(?:^|\n)\d+ size=(\d+)\n/.exec(body);
    if (m?.[1] !== undefined) this.#paxSize = Number(m[1]);
  }

  /**
   * problem says why the bytes seen are not a complete tar archive, or
   * undefined when they are one.
   */
  problem(): string | undefined {
    if (this.#offset === 0) return 'it is empty (a tar archive ends with two zero blocks)';
    if (this.#data > 0) {
      return `it ends inside the data of entry ${this.#entries} (${this.#data} bytes missing)`;
    }
    if (this.#offset % block !== 0) {
      return `its ${this.#offset} bytes are not a whole number of 512-byte blocks`;
    }
    if (!this.#ended) return 'it has no end-of-archive marker (two zero blocks)';
    return undefined;
  }

  /**
   * tail is what a tolerant reader appends to a stream that ended cleanly
   * after an entry's data or header (the missing padding and end-of-archive
   * blocks), like GNU tar, skopeo and umoci do.
   * @throws INVALID_LAYER when the stream was cut inside an entry's data or a header.
   */
  tail(): Buffer {
    if (this.#ended) return Buffer.alloc(0);
    if (this.#data > 0 || this.#filled > 0) {
      throw invalidLayer(`the layer is truncated: ${this.problem() ?? 'cut inside a header'}`);
    }
    return Buffer.alloc(this.#pad + 2 * block);
  }
}

/**
 * TarCheck passes a layer's uncompressed bytes through unchanged and fails
 * at the end, with INVALID_LAYER, unless they are one complete tar archive:
 * a stream that is empty, stops mid-entry or mid-block, or lacks the
 * end-of-archive marker is what a producer that failed or was killed leaves.
 */
export class TarCheck extends Transform {
  readonly #scanner = new TarScanner();
  // A bad header is reported at the end too, so that an error of the source
  // itself (which ends the stream first) is the one callers see.
  #bad: unknown;

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    if (this.#bad === undefined) {
      try {
        this.#scanner.update(chunk);
      } catch (err) {
        this.#bad = err;
      }
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.#bad !== undefined) {
      callback(this.#bad as Error);
      return;
    }
    const problem = this.#scanner.problem();
    if (problem === undefined) callback();
    else callback(invalidLayer(`the layer is not a complete tar archive: ${problem}`));
  }
}

/**
 * completeTar yields a tar stream's bytes, then the padding and
 * end-of-archive blocks it lacks when it ended cleanly after an entry.
 * @throws INVALID_LAYER when it was cut inside an entry's data or a header.
 */
export async function* completeTar(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const scanner = new TarScanner();
  for await (const chunk of source) {
    scanner.update(chunk);
    yield chunk;
  }
  const tail = scanner.tail();
  if (tail.length > 0) yield tail;
}
