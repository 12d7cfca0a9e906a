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

/** untilNul is the bytes of a NUL-terminated field. */
function untilNul(b: Buffer, off: number, len: number): Buffer {
  const end = b.indexOf(0, off);
  return b.subarray(off, end < 0 || end > off + len ? off + len : end);
}

/** hasHighByte says whether `len` bytes of `b` from `off` hold one over 0x7f (not ASCII). */
function hasHighByte(b: Buffer, off: number, len: number): boolean {
  const end = Math.min(b.length, off + len);
  for (let i = off; i < end; i++) if ((b[i] ?? 0) > 0x7f) return true;
  return false;
}

function nonEmpty(b: Buffer | undefined): Buffer | undefined {
  return b !== undefined && b.length > 0 ? b : undefined;
}

/** paxRecords yields a PAX header's `length key=value\n` records, the value as bytes. */
function* paxRecords(data: Buffer): Generator<[string, Buffer]> {
  let off = 0;
  while (off < data.length) {
    const space = data.indexOf(0x20, off);
    if (space < 0) return;
    const len = Number(data.toString('latin1', off, space));
    if (!Number.isSafeInteger(len) || len <= space - off + 1 || off + len > data.length) return;
    const record = data.subarray(space + 1, off + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq < 0) return;
    yield [record.toString('utf8', 0, eq), record.subarray(eq + 1)];
    off += len;
  }
}

/**
 * maxRawNames bounds the raw names held for entries not reached yet (the
 * scanner runs ahead of the tar reader by what the streams buffer).
 */
const maxRawNames = 4096;

/**
 * RawNames carries the bytes of entry names and link targets that are not
 * UTF-8 from the tar's headers to its reader: tar-stream decodes them as
 * UTF-8, a U+FFFD for each bad sequence, so two names can decode alike and
 * neither can be written back. Each decoded string keeps a queue of the
 * bytes behind it, in the order the headers came.
 */
export class RawNames {
  readonly #queues = new Map<string, Buffer[]>();
  #held = 0;

  /**
   * @param records whether the other PAX records of an entry (extended
   *   attributes) are kept too, as `key=value`, looked up with {@link record}.
   */
  constructor(readonly records = false) {}

  /** add records `raw` when decoding it as UTF-8 loses something. */
  add(raw: Buffer): void {
    if (!hasHighByte(raw, 0, raw.length)) return;
    const decoded = raw.toString('utf8');
    if (!decoded.includes('\uFFFD') || this.#held >= maxRawNames) return;
    const queue = this.#queues.get(decoded);
    if (queue === undefined) this.#queues.set(decoded, [Buffer.from(raw)]);
    else queue.push(Buffer.from(raw));
    this.#held++;
  }

  /**
   * bytes returns the bytes behind `decoded`, a name as tar-stream gave it,
   * as a byte string (one char per byte, the latin1 view): its bytes when
   * the header held them, else its UTF-8 encoding. Called once per name
   * read, in the tar's order.
   */
  bytes(decoded: string): string {
    if (isAscii(decoded)) return decoded;
    if (decoded.includes('\uFFFD')) {
      const queue = this.#queues.get(decoded);
      const raw = queue?.shift();
      if (raw !== undefined) {
        this.#held--;
        if (queue?.length === 0) this.#queues.delete(decoded);
        return raw.toString('latin1');
      }
    }
    return Buffer.from(decoded, 'utf8').toString('latin1');
  }

  /**
   * record returns the bytes behind a PAX record's value as tar-stream gave
   * it: the bytes when the header held ones that are not UTF-8, else the
   * text. Called once per record read, in the tar's order.
   */
  record(key: string, value: string): string | Buffer {
    if (!value.includes('\uFFFD')) return value;
    const bytes = Buffer.from(this.bytes(`${key}=${value}`), 'latin1');
    return bytes.subarray(Buffer.byteLength(`${key}=`));
  }
}

const nonAscii = /[\u0080-\uffff]/;

/** isAscii says whether `s` is all ASCII: its byte string and its text are the same. */
export function isAscii(s: string): boolean {
  return !nonAscii.test(s);
}

/** asName is `bytes` as a string when they are valid UTF-8, else the bytes (a name as a file system or tar holds it). */
export function asName(bytes: Buffer): string | Buffer {
  const s = bytes.toString('utf8');
  return s.includes('\uFFFD') && !Buffer.from(s, 'utf8').equals(bytes) ? bytes : s;
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
  #endAt: number | undefined;
  #entries = 0;
  /** The data of the PAX header or GNU long name being read, and its type. */
  #meta: Buffer[] | undefined;
  #metaType = '';
  #paxSize: number | undefined;
  readonly #names: RawNames | undefined;
  /** Raw names from the PAX header and GNU long names before the next entry. */
  #pending: {
    path?: Buffer;
    linkpath?: Buffer;
    sparseName?: Buffer;
    long?: Buffer;
    longLink?: Buffer;
  } = {};

  /**
   * @param names collects the raw bytes of names that are not UTF-8 (and,
   *   when it asks for them, of other PAX records), when given.
   */
  constructor(names?: RawNames) {
    this.#names = names;
  }

  /** update takes the next bytes. @throws INVALID_LAYER for a block that is not a tar header. */
  update(chunk: Uint8Array): void {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    let off = 0;
    while (off < buf.length && !this.#ended) {
      if (this.#data > 0) {
        const n = Math.min(this.#data, buf.length - off);
        this.#meta?.push(buf.subarray(off, off + n));
        this.#data -= n;
        off += n;
        if (this.#data === 0 && this.#meta !== undefined) this.#endMeta();
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

  /**
   * endAt is the offset just past the end-of-archive marker (the second
   * zero block) once it has been seen; what follows is not the archive.
   */
  get endAt(): number | undefined {
    return this.#endAt;
  }

  #onHeader(at: number): void {
    const h = this.#header;
    if (isZero(h)) {
      this.#zeros++;
      if (this.#zeros >= 2) {
        this.#ended = true;
        this.#endAt = at + block;
      }
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
    const collect = type === 'x' || (this.#names !== undefined && (type === 'L' || type === 'K'));
    if (collect && size > 0 && size <= maxPaxBody) {
      this.#meta = [];
      this.#metaType = type;
    }
    if (this.#names !== undefined && type !== 'x' && type !== 'g' && type !== 'L' && type !== 'K')
      this.#recordNames(h, this.#names);
  }

  #endMeta(): void {
    const data = Buffer.concat(this.#meta ?? []);
    this.#meta = undefined;
    if (this.#metaType === 'L') {
      this.#pending.long = untilNul(data, 0, data.length);
      return;
    }
    if (this.#metaType === 'K') {
      this.#pending.longLink = untilNul(data, 0, data.length);
      return;
    }
    const body = data.toString('utf8');
    const m = /(?:^|\n)\d+ size=(\d+)\n/.exec(body);
    if (m?.[1] !== undefined) this.#paxSize = Number(m[1]);
    if (this.#names === undefined) return;
    // A second PAX header before the entry replaces the first (as tar-stream reads them).
    this.#pending = { long: this.#pending.long, longLink: this.#pending.longLink };
    for (const [key, value] of paxRecords(data)) {
      if (key === 'path') this.#pending.path = value;
      else if (key === 'linkpath') this.#pending.linkpath = value;
      else if (key === 'GNU.sparse.name') this.#pending.sparseName = value;
      else if (this.#names.records) this.#names.add(Buffer.concat([Buffer.from(`${key}=`), value]));
    }
  }

  /**
   * recordNames gives `names` the bytes of an entry's name, link target
   * and sparse name, taken the way tar-stream takes them (a PAX record over
   * a GNU long name over the header's fields), so that its decoded strings
   * find them.
   */
  #recordNames(h: Buffer, names: RawNames): void {
    const p = this.#pending;
    this.#pending = {};
    const path = nonEmpty(p.path) ?? nonEmpty(p.long);
    if (path !== undefined) names.add(path);
    else if (hasHighByte(h, 0, 100) || hasHighByte(h, 345, 155)) {
      let name = untilNul(h, 0, 100);
      // The ustar prefix (GNU's headers use those bytes for other things).
      if (h.toString('latin1', 257, 263) === 'ustar\0' && h[345] !== 0)
        name = Buffer.concat([untilNul(h, 345, 155), Buffer.from('/'), name]);
      names.add(name);
    }
    const link =
      nonEmpty(p.linkpath) ??
      nonEmpty(p.longLink) ??
      (h[157] === 0 ? undefined : untilNul(h, 157, 100));
    if (link !== undefined) names.add(link);
    if (p.sparseName !== undefined) names.add(p.sparseName);
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
 * completeTar yields a tar stream's bytes up to its end-of-archive marker
 * (reading, not yielding, whatever follows), or the padding and
 * end-of-archive blocks it lacks when it ended cleanly after an entry;
 * `names` gets the raw bytes of names that are not UTF-8.
 * @throws INVALID_LAYER when it was cut inside an entry's data or a header.
 */
export async function* completeTar(
  source: AsyncIterable<Buffer>,
  names?: RawNames,
): AsyncGenerator<Buffer> {
  const scanner = new TarScanner(names);
  let at = 0;
  let past = false;
  for await (const chunk of source) {
    // Bytes after the end-of-archive marker are read (whoever verifies the
    // layer hashes them) but not handed on: GNU tar and umoci ignore them.
    if (past) continue;
    scanner.update(chunk);
    const end = scanner.endAt;
    if (end !== undefined) {
      past = true;
      if (end > at) yield chunk.subarray(0, end - at);
      continue;
    }
    at += chunk.length;
    yield chunk;
  }
  const tail = scanner.tail();
  if (tail.length > 0) yield tail;
}
