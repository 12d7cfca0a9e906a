import {
  createReadStream,
  lstatSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  type Stats,
} from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { AbortedError, ErrorCode, LadingError } from '@lading/core';
import { encodeHeader, padding, tarTrailer, type TarHeader } from './internal/tar-header.js';
import { OpenerLayer } from './opener-layer.js';
import { defaultMediaType, type LayerOptions } from './stream-layer.js';

/** DirectoryTarOptions configure how a directory becomes a deterministic tar. */
export interface DirectoryTarOptions {
  /**
   * owner of every entry: `root` (default, uid/gid 0), `keep` (the files'
   * own uid/gid), or fixed ids. User and group names are never written.
   */
  readonly owner?: 'root' | 'keep' | { readonly uid: number; readonly gid: number };
  /**
   * sourceDateEpoch clamps every mtime to at most this many seconds since
   * the epoch. Defaults to the `SOURCE_DATE_EPOCH` environment variable
   * (read when the layer is created) when that is set.
   */
  readonly sourceDateEpoch?: number;
  /** mtime sets every entry's mtime to exactly this value (wins over sourceDateEpoch). */
  readonly mtime?: Date | number;
  /** prefix places the tree under this path inside the tar (its directories are emitted too). */
  readonly prefix?: string;
  /**
   * filter is called with each path relative to the directory (`a/b.txt`,
   * no trailing slash) and its lstat; returning false skips the path (and,
   * for a directory, everything below it).
   */
  readonly filter?: (path: string, stat: Stats) => boolean;
  /** deletions are paths (relative to the layer root, under `prefix`) to delete from lower layers: `.wh.<name>` entries. */
  readonly deletions?: readonly string[];
  /** opaque are directories whose lower-layer contents are hidden: `.wh..wh..opq` entries. */
  readonly opaque?: readonly string[];
  /** signal aborts the walk. */
  readonly signal?: AbortSignal;
}

/** DirectoryLayerOptions configure {@link layerFromDirectory}. */
export interface DirectoryLayerOptions extends DirectoryTarOptions, LayerOptions {}

const smallFile = 1024 * 1024;
const chunkTarget = 1024 * 1024;
const readHighWaterMark = 4 * 1024 * 1024;

interface Resolved {
  readonly owner: DirectoryTarOptions['owner'];
  readonly clamp: number | undefined;
  readonly fixed: number | undefined;
  readonly prefix: string;
  readonly filter: DirectoryTarOptions['filter'];
  readonly whiteouts: Map<string, { opaque: boolean; names: Set<string> }>;
  readonly signal: AbortSignal | undefined;
}

function cleanRelative(p: string, what: string): string {
  const parts = p.split('/').filter((x) => x !== '' && x !== '.');
  if (parts.some((x) => x === '..')) {
    throw new LadingError(
      ErrorCode.UnsafePath,
      `${what} ${JSON.stringify(p)} has a ".." component`,
    );
  }
  return parts.join('/');
}

function resolveOptions(options: DirectoryTarOptions): Resolved {
  const env = process.env.SOURCE_DATE_EPOCH;
  let clamp = options.sourceDateEpoch;
  if (clamp === undefined && env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0) {
      throw new LadingError(
        ErrorCode.InvalidArgument,
        `SOURCE_DATE_EPOCH=${env} is not a number of seconds`,
      );
    }
    clamp = n;
  }
  const m = options.mtime;
  const fixed =
    m === undefined ? undefined : Math.floor(typeof m === 'number' ? m : m.getTime() / 1000);
  const whiteouts = new Map<string, { opaque: boolean; names: Set<string> }>();
  const slot = (dir: string) => {
    let s = whiteouts.get(dir);
    if (s === undefined) {
      s = { opaque: false, names: new Set() };
      whiteouts.set(dir, s);
    }
    return s;
  };
  for (const d of options.deletions ?? []) {
    const rel = cleanRelative(d, 'deletion');
    if (rel === '') throw new LadingError(ErrorCode.InvalidArgument, 'cannot delete the root');
    const cut = rel.lastIndexOf('/');
    slot(cut < 0 ? '' : rel.slice(0, cut)).names.add(rel.slice(cut + 1));
  }
  for (const d of options.opaque ?? []) slot(cleanRelative(d, 'opaque directory')).opaque = true;
  return {
    owner: options.owner,
    clamp,
    fixed,
    prefix: cleanRelative(options.prefix ?? '', 'prefix'),
    filter: options.filter,
    whiteouts,
    signal: options.signal,
  };
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function ioError(message: string, cause: unknown): LadingError {
  return new LadingError(ErrorCode.Io, message, { cause });
}

/** Batcher gathers small buffers into ~1 MiB chunks, so later stages see few large writes. */
class Batcher {
  parts: Buffer[] = [];
  size = 0;
  add(b: Buffer): boolean {
    if (b.length > 0) {
      this.parts.push(b);
      this.size += b.length;
    }
    return this.size >= chunkTarget;
  }
  take(): Buffer {
    const out =
      this.parts.length === 1
        ? (this.parts[0] ?? Buffer.alloc(0))
        : Buffer.concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    return out;
  }
}

async function* walkTar(root: string, r: Resolved): AsyncGenerator<Buffer> {
  const batch = new Batcher();
  const hardlinks = new Map<string, string>();
  const synthMtime = r.fixed ?? 0;
  const ids = (st: Stats): { uid: number; gid: number } => {
    if (r.owner === 'keep') return { uid: st.uid, gid: st.gid };
    if (r.owner === undefined || r.owner === 'root') return { uid: 0, gid: 0 };
    return { uid: r.owner.uid, gid: r.owner.gid };
  };
  const mtimeOf = (st: Stats): number => {
    if (r.fixed !== undefined) return r.fixed;
    const t = Math.floor(st.mtimeMs / 1000);
    return r.clamp !== undefined && t > r.clamp ? r.clamp : t;
  };
  const tarName = (rel: string): string =>
    r.prefix === '' ? rel : rel === '' ? r.prefix : `${r.prefix}/${rel}`;
  const synthetic = (name: string, type: 'file' | 'directory'): Buffer =>
    encodeHeader({
      name,
      type,
      mode: type === 'directory' ? 0o755 : 0o644,
      uid: 0,
      gid: 0,
      size: 0,
      mtime: synthMtime,
    });
  const emitWhiteouts = (dirRel: string): Buffer[] => {
    const w = r.whiteouts.get(dirRel);
    if (w === undefined) return [];
    r.whiteouts.delete(dirRel);
    const base = tarName(dirRel);
    const at = (n: string) => (base === '' ? n : `${base}/${n}`);
    const out: Buffer[] = [];
    if (w.opaque) out.push(synthetic(at('.wh..wh..opq'), 'file'));
    for (const n of [...w.names].sort(byteOrder)) out.push(synthetic(at(`.wh.${n}`), 'file'));
    return out;
  };

  // The prefix's own directories.
  if (r.prefix !== '') {
    const parts = r.prefix.split('/');
    for (let i = 1; i <= parts.length; i++)
      batch.add(synthetic(`${parts.slice(0, i).join('/')}/`, 'directory'));
  }

  // Depth-first, each directory's children in byte order, listed one
  // directory at a time (the tree is never listed up front).
  const stack: { abs: string; rel: string; names: string[]; i: number }[] = [];
  const list = (abs: string, rel: string) => {
    let names: string[];
    try {
      names = readdirSync(abs);
    } catch (e) {
      throw ioError(`cannot list ${abs}`, e);
    }
    names.sort(byteOrder);
    for (const b of emitWhiteouts(rel)) batch.add(b);
    stack.push({ abs, rel, names, i: 0 });
  };
  list(root, '');
  while (stack.length > 0) {
    if (r.signal?.aborted === true) throw new AbortedError(r.signal.reason);
    const top = stack[stack.length - 1];
    if (top === undefined) break;
    const name = top.names[top.i++];
    if (name === undefined) {
      stack.pop();
      continue;
    }
    const abs = join(top.abs, name);
    const rel = top.rel === '' ? name : `${top.rel}/${name}`;
    let st: Stats;
    try {
      st = lstatSync(abs);
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') continue; // vanished while walking
      throw ioError(`cannot stat ${abs}`, e);
    }
    if (st.isSocket()) continue;
    if (r.filter !== undefined && !r.filter(rel, st)) continue;
    const base = { mode: st.mode & 0o7777, ...ids(st), mtime: mtimeOf(st), size: 0 };
    const name2 = tarName(rel);
    if (st.isDirectory()) {
      if (batch.add(encodeHeader({ ...base, name: `${name2}/`, type: 'directory' })))
        yield batch.take();
      list(abs, rel);
      continue;
    }
    if (st.isSymbolicLink()) {
      let target: string;
      try {
        target = readlinkSync(abs);
      } catch (e) {
        throw ioError(`cannot read link ${abs}`, e);
      }
      if (batch.add(encodeHeader({ ...base, name: name2, type: 'symlink', linkname: target })))
        yield batch.take();
      continue;
    }
    if (st.isFIFO() || st.isCharacterDevice() || st.isBlockDevice()) {
      const rdev = st.rdev;
      const h: TarHeader = {
        ...base,
        name: name2,
        type: st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'character-device' : 'block-device',
        devmajor: st.isFIFO() ? 0 : Math.floor(rdev / 256) & 0xfff,
        devminor: st.isFIFO() ? 0 : (rdev & 0xff) | (Math.floor(rdev / 4096) & 0xfff00),
      };
      if (batch.add(encodeHeader(h))) yield batch.take();
      continue;
    }
    if (!st.isFile()) continue;
    if (st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      const first = hardlinks.get(key);
      if (first !== undefined) {
        if (batch.add(encodeHeader({ ...base, name: name2, type: 'link', linkname: first })))
          yield batch.take();
        continue;
      }
      hardlinks.set(key, name2);
    }
    if (st.size < smallFile) {
      let data: Buffer;
      try {
        data = readFileSync(abs);
      } catch (e) {
        throw ioError(`cannot read ${abs}`, e);
      }
      batch.add(encodeHeader({ ...base, name: name2, type: 'file', size: data.length }));
      batch.add(data);
      if (batch.add(Buffer.alloc(padding(data.length)))) yield batch.take();
      continue;
    }
    batch.add(encodeHeader({ ...base, name: name2, type: 'file', size: st.size }));
    if (batch.size > 0) yield batch.take();
    let got = 0;
    const rs = createReadStream(abs, {
      highWaterMark: readHighWaterMark,
      start: 0,
      end: st.size - 1,
    });
    try {
      for await (const chunk of rs as AsyncIterable<Buffer>) {
        got += chunk.length;
        yield chunk;
      }
    } catch (e) {
      throw ioError(`cannot read ${abs}`, e);
    }
    if (got !== st.size) {
      throw new LadingError(
        ErrorCode.Io,
        `${abs} shrank from ${st.size} to ${got} bytes while being read`,
      );
    }
    batch.add(Buffer.alloc(padding(st.size)));
  }
  // Whiteouts whose directory is not in the tree go last, in byte order.
  for (const dir of [...r.whiteouts.keys()].sort(byteOrder))
    for (const b of emitWhiteouts(dir)) batch.add(b);
  batch.add(tarTrailer);
  yield batch.take();
}

/**
 * directoryTar streams `dir` as a deterministic tar, with no temporary files:
 * entries depth-first with each directory's children in byte order of their
 * names, uid/gid 0 unless asked, mtimes clamped to SOURCE_DATE_EPOCH when
 * set, no atime/ctime, PAX headers for long names and huge files, symlinks as
 * links, hardlinks as link entries to the first path seen, sockets skipped.
 * @throws INVALID_ARGUMENT or UNSAFE_PATH for bad options; the stream fails
 *   with IO on file-system errors and ABORTED when the signal fires.
 */
export function directoryTar(dir: string, options: DirectoryTarOptions = {}): Readable {
  const r = resolveOptions(options);
  return Readable.from(walkTar(dir, r), { objectMode: false, highWaterMark: chunkTarget });
}

/**
 * layerFromDirectory makes a re-openable, deterministic layer from a
 * directory tree (see {@link directoryTar}); each read walks the tree again.
 * @see ../../../shared/DESIGN.md §3.1
 * @throws INVALID_ARGUMENT or UNSAFE_PATH for bad options.
 */
export function layerFromDirectory(dir: string, options: DirectoryLayerOptions = {}): OpenerLayer {
  // Validate and read SOURCE_DATE_EPOCH once, at creation.
  const r = resolveOptions(options);
  const tarOptions: DirectoryTarOptions = {
    ...options,
    sourceDateEpoch: r.clamp,
  };
  return new OpenerLayer(
    () => Promise.resolve({ stream: directoryTar(dir, tarOptions), gzipped: false }),
    defaultMediaType(options, (options.compression ?? 'gzip') === 'gzip'),
    options,
  );
}
