import type { PathLike } from 'node:fs';
import { rm } from 'node:fs/promises';
import { ErrorCode, LadingError } from '@lading/core';
import { openNewFile } from './new-file.js';

/** SparseHeader is the part of a tar-stream header that tells a sparse entry apart. */
interface SparseHeader {
  readonly name: string;
  readonly type: string | null;
  readonly pax?: unknown;
}

/** SparseLayout is where a PAX sparse file's data chunks go, and its real name and size. */
export interface SparseLayout {
  readonly name: string;
  readonly realSize: number;
  /** map lists [offset, size] chunks; 'inline' (format 1.0) reads it from the data. */
  readonly map: readonly (readonly [number, number])[] | 'inline';
}

/** The largest inline sparse map read (format 1.0 keeps it at the start of the data). */
const maxInlineMap = 8 * 1024 * 1024;

function unsupported(h: SparseHeader, what: string): LadingError {
  return new LadingError(
    ErrorCode.Unsupported,
    `tar entry ${JSON.stringify(h.name)} is ${what}; lading does not extract those (re-create the layer without --sparse, or as PAX sparse 1.0)`,
  );
}

function invalid(name: string, why: string): LadingError {
  return new LadingError(
    ErrorCode.InvalidArgument,
    `sparse tar entry ${JSON.stringify(name)}: ${why}`,
  );
}

function count(name: string, text: string | undefined): number {
  if (text === undefined || !/^\d{1,15}$/.test(text)) throw invalid(name, 'a bad number');
  return Number(text);
}

/** checkMap refuses chunks that overlap, go backwards or pass the real size. */
function checkMap(name: string, numbers: readonly number[], realSize: number): [number, number][] {
  if (numbers.length % 2 !== 0) throw invalid(name, 'the map has an odd count');
  const map: [number, number][] = [];
  let end = 0;
  for (let i = 0; i < numbers.length; i += 2) {
    const offset = numbers[i] ?? 0;
    const size = numbers[i + 1] ?? 0;
    if (offset < end || offset + size > realSize) {
      throw invalid(
        name,
        `chunk ${String(offset)}+${String(size)} is out of order or past the end`,
      );
    }
    end = offset + size;
    map.push([offset, size]);
  }
  return map;
}

/**
 * sparseOf tells whether a tar entry is sparse. PAX sparse files of
 * formats 0.1 (`GNU.sparse.map`) and 1.0 (the map inline, before the data)
 * are extracted under their real name (`GNU.sparse.name`) by
 * {@link writeSparseFile}; a GNU `S` entry (tar-stream reports no type for
 * it and keeps no map), format 0.0 (its repeated keys are lost by the PAX
 * parser) and any other entry of unknown type are refused, never written
 * as `GNUSparseFile.N/…` paths nor dropped in silence.
 * @throws UNSUPPORTED, INVALID_ARGUMENT for a malformed map
 */
export function sparseOf(h: SparseHeader): SparseLayout | undefined {
  if (h.type === null) throw unsupported(h, 'a GNU sparse file or an unknown entry type');
  const pax = (typeof h.pax === 'object' && h.pax !== null ? h.pax : {}) as Record<
    string,
    string | undefined
  >;
  if (!Object.keys(pax).some((k) => k.startsWith('GNU.sparse.'))) return undefined;
  const name = pax['GNU.sparse.name'];
  if (name !== undefined && pax['GNU.sparse.major'] === '1' && pax['GNU.sparse.minor'] === '0') {
    return { name, realSize: count(name, pax['GNU.sparse.realsize']), map: 'inline' };
  }
  const map = pax['GNU.sparse.map'];
  if (name !== undefined && map !== undefined) {
    const realSize = count(name, pax['GNU.sparse.size']);
    const numbers = map.split(',').map((n) => count(name, n));
    return { name, realSize, map: checkMap(name, numbers, realSize) };
  }
  throw unsupported(h, 'a PAX sparse file of format 0.0');
}

/** ChunkReader hands out an entry's bytes by count. */
class ChunkReader {
  readonly #it: AsyncIterator<Buffer>;
  #rest: Buffer = Buffer.alloc(0);
  consumed = 0;

  constructor(source: AsyncIterable<Buffer>) {
    this.#it = source[Symbol.asyncIterator]();
  }

  /** next returns up to `max` bytes, or undefined at the end of the entry. */
  async next(max: number): Promise<Buffer | undefined> {
    if (this.#rest.length === 0) {
      const r = await this.#it.next();
      if (r.done === true) return undefined;
      this.#rest = r.value;
    }
    const out = this.#rest.subarray(0, max);
    this.#rest = this.#rest.subarray(out.length);
    this.consumed += out.length;
    return out;
  }
}

/** readInlineMap parses format 1.0's map: decimal lines (count, then offset/size pairs), padded to 512. */
async function readInlineMap(
  reader: ChunkReader,
  layout: SparseLayout,
): Promise<[number, number][]> {
  let text = '';
  const numbers: number[] = [];
  let want = -1;
  while (want < 0 || numbers.length < want) {
    const nl = text.indexOf('\n');
    if (nl >= 0) {
      const n = count(layout.name, text.slice(0, nl));
      text = text.slice(nl + 1);
      if (want < 0) want = n * 2;
      else numbers.push(n);
      continue;
    }
    if (reader.consumed > maxInlineMap) throw invalid(layout.name, 'the map is too large');
    // Never read past a 512-byte boundary: the block the map ends in is all map and padding.
    const chunk = await reader.next(512 - (reader.consumed % 512));
    if (chunk === undefined) throw invalid(layout.name, 'the data ends inside the map');
    text += chunk.toString('latin1');
  }
  // What is left of the block (and of `text`) is padding up to the data.
  let skip = (512 - (reader.consumed % 512)) % 512;
  while (skip > 0) {
    const chunk = await reader.next(skip);
    if (chunk === undefined) throw invalid(layout.name, 'the data ends inside the map');
    skip -= chunk.length;
  }
  return checkMap(layout.name, numbers, layout.realSize);
}

/**
 * writeSparseFile creates `abs` (O_EXCL | O_NOFOLLOW, like any extracted
 * file) and writes a PAX sparse entry's chunks at their offsets, then sets
 * the real size; holes stay holes. A short or overlong entry removes the
 * file again.
 * @throws INVALID_ARGUMENT for a malformed map or data that does not match it
 */
export async function writeSparseFile(
  abs: PathLike,
  entry: AsyncIterable<Buffer>,
  layout: SparseLayout,
  mode: number,
): Promise<void> {
  const fh = await openNewFile(abs);
  let complete = false;
  try {
    await fh.chmod(mode);
    const reader = new ChunkReader(entry);
    const map = layout.map === 'inline' ? await readInlineMap(reader, layout) : layout.map;
    for (const [offset, size] of map) {
      let done = 0;
      while (done < size) {
        const chunk = await reader.next(size - done);
        if (chunk === undefined) throw invalid(layout.name, 'the data is shorter than the map');
        await fh.write(chunk, 0, chunk.length, offset + done);
        done += chunk.length;
      }
    }
    if ((await reader.next(1))?.length === 1) {
      throw invalid(layout.name, 'the data is longer than the map');
    }
    await fh.truncate(layout.realSize);
    complete = true;
  } finally {
    await fh.close();
    if (!complete) await rm(abs, { force: true });
  }
}
