import { open } from 'node:fs/promises';
import { posix } from 'node:path';
import { ErrorCode, LadingError, throwIfAborted } from '@lading/core';
import { encodeTarHeader, tarPadding } from '@lading/core/internal';

/** TarEntry is one member of an uncompressed tar, located by byte offset. */
export type TarEntry = {
  readonly name: string;
  readonly type: 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';
  /** offset of the entry's data in the archive file. */
  readonly offset: number;
  readonly size: number;
  readonly linkname?: string;
};

const block = 512;

function cstr(buf: Buffer, start: number, length: number): string {
  const slice = buf.subarray(start, start + length);
  const nul = slice.indexOf(0);
  return slice.subarray(0, nul < 0 ? slice.length : nul).toString('utf8');
}

/**
 * numeric reads an octal (or GNU base-256) header field; it returns NaN for
 * anything else (garbage, a sign, a negative base-256 value, over 2^53).
 */
function numeric(buf: Buffer, start: number, length: number): number {
  const first = buf[start] ?? 0;
  if ((first & 0x80) !== 0) {
    // GNU base-256 for sizes over 8 GiB; 0xff starts a negative value.
    if ((first & 0x40) !== 0) return NaN;
    let value = first & 0x3f;
    for (let i = 1; i < length; i++) value = value * 256 + (buf[start + i] ?? 0);
    return Number.isSafeInteger(value) ? value : NaN;
  }
  const text = cstr(buf, start, length).trim();
  if (!/^[0-7]*$/.test(text)) return NaN;
  return text === '' ? 0 : parseInt(text, 8);
}

function checksumOk(header: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < block; i++) sum += i >= 148 && i < 156 ? 32 : (header[i] ?? 0);
  const stored = numeric(header, 148, 8);
  return !Number.isNaN(stored) && sum === stored;
}

function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) break;
    const len = parseInt(data.subarray(pos, space).toString('utf8'), 10);
    if (!Number.isFinite(len) || len <= 0) break;
    const record = data.subarray(space + 1, pos + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    pos += len;
  }
  return out;
}

/** normalizeName maps `./a//b/` to `a/b`, the key entries are looked up by. */
export function normalizeName(name: string): string {
  const n = posix
    .normalize(name)
    .replace(/^(\.\/)+/, '')
    .replace(/\/+$/, '');
  return n === '.' ? '' : n;
}

function corrupt(path: string, why: string): LadingError {
  return new LadingError(ErrorCode.InvalidArgument, `${path} is not a readable tar: ${why}`);
}

/**
 * indexTar reads only the headers of an uncompressed tar file (ustar, PAX
 * and GNU long names) and returns every entry by normalized name, with the
 * offset of its data, so entries can then be streamed with
 * `createReadStream(path, { start, end })`.
 * @throws UNSUPPORTED for a compressed archive, INVALID_ARGUMENT for a corrupt one
 */
export async function indexTar(
  path: string,
  options: { signal?: AbortSignal | undefined } = {},
): Promise<Map<string, TarEntry>> {
  const fh = await open(path, 'r');
  const entries = new Map<string, TarEntry>();
  try {
    const { size: fileSize } = await fh.stat();
    const header = Buffer.alloc(block);
    let pos = 0;
    let pax = new Map<string, string>();
    let longName: string | undefined;
    let longLink: string | undefined;
    await fh.read(header, 0, Math.min(2, fileSize), 0);
    if (header[0] === 0x1f && header[1] === 0x8b) {
      throw new LadingError(
        ErrorCode.Unsupported,
        `${path} is gzip-compressed; docker archives are read uncompressed (gunzip it first)`,
      );
    }
    while (pos + block <= fileSize) {
      throwIfAborted(options.signal);
      await fh.read(header, 0, block, pos);
      if (header.every((b) => b === 0)) break;
      if (!checksumOk(header)) throw corrupt(path, `bad header checksum at offset ${pos}`);
      const size = numeric(header, 124, 12);
      if (!Number.isSafeInteger(size) || size < 0) {
        throw corrupt(path, `bad size field in the header at offset ${pos}`);
      }
      const typeflag = String.fromCharCode(header[156] ?? 0);
      const dataStart = pos + block;
      const next = dataStart + Math.ceil(size / block) * block;
      if (dataStart + size > fileSize) throw corrupt(path, `entry at ${pos} runs past the end`);
      const readData = async (): Promise<Buffer> => {
        if (size > 1024 * 1024) throw corrupt(path, `metadata entry at ${pos} is too large`);
        const data = Buffer.alloc(size);
        await fh.read(data, 0, size, dataStart);
        return data;
      };
      if (typeflag === 'x') {
        pax = parsePax(await readData());
      } else if (typeflag === 'L') {
        longName = cstr(await readData(), 0, size);
      } else if (typeflag === 'K') {
        longLink = cstr(await readData(), 0, size);
      } else if (typeflag === 'g') {
        // global PAX headers carry nothing lading needs
      } else {
        let name = cstr(header, 0, 100);
        const magic = cstr(header, 257, 6);
        if (magic.startsWith('ustar')) {
          const prefix = cstr(header, 345, 155);
          if (prefix !== '') name = `${prefix}/${name}`;
        }
        name = pax.get('path') ?? longName ?? name;
        const linkname = pax.get('linkpath') ?? longLink ?? cstr(header, 157, 100);
        const paxSize = pax.get('size');
        const realSize =
          paxSize === undefined ? size : /^\d{1,15}$/.test(paxSize) ? Number(paxSize) : NaN;
        if (Number.isNaN(realSize) || dataStart + realSize > fileSize) {
          throw corrupt(path, `bad PAX size for the entry at offset ${pos}`);
        }
        const type =
          typeflag === '0' || typeflag === '\0' || typeflag === '7'
            ? 'file'
            : typeflag === '5'
              ? 'directory'
              : typeflag === '2'
                ? 'symlink'
                : typeflag === '1'
                  ? 'hardlink'
                  : 'other';
        const entry: TarEntry = {
          name: normalizeName(name),
          type,
          offset: dataStart,
          size: type === 'file' ? realSize : 0,
          ...(type === 'symlink' || type === 'hardlink' ? { linkname } : {}),
        };
        entries.set(entry.name, entry);
        pax = new Map();
        longName = undefined;
        longLink = undefined;
        pos = dataStart + Math.ceil(realSize / block) * block;
        continue;
      }
      pos = next;
    }
  } finally {
    await fh.close();
  }
  return entries;
}

/**
 * resolveEntry follows symlinks and hardlinks (relative to the archive
 * root) to the regular file an archive path names.
 */
export function resolveEntry(entries: Map<string, TarEntry>, name: string): TarEntry | undefined {
  let current = entries.get(normalizeName(name));
  for (let hops = 0; current !== undefined && hops < 16; hops++) {
    if (current.type === 'file') return current;
    if (current.linkname === undefined) return undefined;
    const target =
      current.type === 'hardlink'
        ? current.linkname
        : current.linkname.startsWith('/')
          ? current.linkname.slice(1)
          : posix.join(posix.dirname(current.name), current.linkname);
    current = entries.get(normalizeName(target));
  }
  return undefined;
}

/**
 * tarHeader is the header of a docker-archive member: a regular file (0644),
 * a directory (0755) or a hardlink to `linkname` (an earlier entry), owned
 * by root, dated at the epoch. core's {@link encodeTarHeader} writes it, in
 * PAX form for a name over 100 bytes or a size of 8 GiB or more.
 */
export function tarHeader(
  name: string,
  size: number,
  type: 'file' | 'directory' | 'hardlink' = 'file',
  linkname?: string,
): Buffer {
  return encodeTarHeader({
    name,
    type: type === 'hardlink' ? 'link' : type,
    mode: type === 'directory' ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    size: type === 'file' ? size : 0,
    mtime: 0,
    ...(linkname === undefined ? {} : { linkname }),
  });
}

/** tarEntry is a whole regular-file member: its header, `data` and the padding. */
export function tarEntry(name: string, data: Buffer): Buffer[] {
  return [tarHeader(name, data.length), data, Buffer.alloc(tarPadding(data.length))];
}
