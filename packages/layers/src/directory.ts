import {
  closeSync,
  constants as fsConstants,
  lstatSync,
  openSync,
  readdirSync,
  readlinkSync,
  type Stats,
} from 'node:fs';
import { open as openAsync } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { AbortedError, ErrorCode, LadingError } from '@lading/core';
import {
  encodeTarHeader,
  tarPadding,
  tarTrailer,
  type TarHeader,
  type TarName,
} from '@lading/core/internal';
import { blockSize as chunkTarget } from './internal/block-pool.js';
import { Chunker } from './internal/chunker.js';
import { linkKey } from './internal/link-key.js';
import { asName } from './internal/tar-check.js';
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
   * (read when the layer is created), else 0: the tar, and so the image
   * digest, does not depend on when the files were touched (like the CLI,
   * ko, jib and apko).
   */
  readonly sourceDateEpoch?: number;
  /**
   * keepMtimes keeps the files' real mtimes instead of clamping them (to
   * `sourceDateEpoch` when given explicitly, not at all otherwise). The tar
   * then changes whenever a file is touched.
   */
  readonly keepMtimes?: boolean;
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
  /**
   * deletions are paths to delete from lower layers, relative to the layer
   * root (so they include `prefix`, and may lie outside it): `.wh.<name>`
   * entries.
   */
  readonly deletions?: readonly string[];
  /** opaque are directories (relative to the layer root, like deletions) whose lower-layer contents are hidden: `.wh..wh..opq` entries. */
  readonly opaque?: readonly string[];
  /** signal aborts the walk. */
  readonly signal?: AbortSignal;
}

/** DirectoryLayerOptions configure {@link layerFromDirectory}. */
export interface DirectoryLayerOptions extends DirectoryTarOptions, LayerOptions {}

const smallFile = 1024 * 1024;

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
  if (clamp === undefined && options.keepMtimes !== true && env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0) {
      throw new LadingError(
        ErrorCode.InvalidArgument,
        `SOURCE_DATE_EPOCH=${env} is not a number of seconds`,
      );
    }
    clamp = n;
  }
  if (clamp === undefined && options.keepMtimes !== true) clamp = 0;
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

// Anything but printable ASCII (control characters too: names rarely have them).
const nonAscii = /[^\x20-\x7e]/;

/**
 * sortByBytes sorts names in byte order of their UTF-8 encoding. Each name
 * is encoded once, not once per comparison; and a list of printable ASCII
 * names (the usual case) is not encoded at all: there UTF-16 code-unit
 * order, the default sort's, is byte order.
 */
function sortByBytes(names: Iterable<string>): string[] {
  const list = [...names];
  if (list.every((n) => !nonAscii.test(n))) return list.sort();
  return list
    .map((name) => ({ name, key: Buffer.from(name, 'utf8') }))
    .sort((a, b) => Buffer.compare(a.key, b.key))
    .map((x) => x.name);
}

/**
 * A name as the file system holds it: a string when it is valid UTF-8 (the
 * usual case), else its raw bytes, which are kept as they are — in the
 * paths the walk opens and in the tar (see encodeTarHeader).
 */
type FsName = TarName & (string | Buffer);

/**
 * listNames lists a directory's names in byte order. Node decodes names as
 * UTF-8 and turns bytes that are not into U+FFFD, a name that no longer
 * opens: a listing that has one is read again as bytes, and the names
 * that are not UTF-8 are kept as bytes.
 */
function listNames(abs: FsName): FsName[] {
  const names = readdirSync(abs);
  if (!names.some((n) => n.includes('\uFFFD'))) return sortByBytes(names);
  return readdirSync(abs, { encoding: 'buffer' })
    .sort((a, b) => Buffer.compare(a, b))
    .map((b) => asName(b));
}

/** joinName joins `a` and `b` with a slash, as bytes when either is. */
function joinName(a: FsName, b: FsName): FsName {
  if (typeof a === 'string' && typeof b === 'string') return `${a}/${b}`;
  return Buffer.concat([Buffer.from(a), Buffer.from('/'), Buffer.from(b)]);
}

/** readLink reads a symlink's target, as bytes when it is not UTF-8. */
function readLink(abs: FsName): FsName {
  const target = readlinkSync(abs);
  return target.includes('\uFFFD') ? asName(readlinkSync(abs, { encoding: 'buffer' })) : target;
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new AbortedError(signal.reason);
}

function ioError(message: string, cause: unknown): LadingError {
  return new LadingError(ErrorCode.Io, message, { cause });
}

/** Regular files are opened without following a symlink swapped in after lstat. */
const openFlags = fsConstants.O_RDONLY | ((fsConstants as { O_NOFOLLOW?: number }).O_NOFOLLOW ?? 0);

async function* walkTar(root: string, r: Resolved, pooled: boolean): AsyncGenerator<Buffer> {
  const batch = new Chunker(pooled);
  const hardlinks = new Map<string, FsName>();
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
  const tarName = (rel: FsName): FsName =>
    r.prefix === '' ? rel : rel === '' ? r.prefix : joinName(r.prefix, rel);
  const synthetic = (name: string, type: 'file' | 'directory'): Buffer =>
    encodeTarHeader({
      name,
      type,
      mode: type === 'directory' ? 0o755 : 0o644,
      uid: 0,
      gid: 0,
      size: 0,
      mtime: synthMtime,
    });
  // Whiteouts are keyed by their directory's path in the layer (prefix
  // included), so that they may also name paths outside the prefix.
  const emitAt = (base: string): Buffer[] => {
    const w = r.whiteouts.get(base);
    if (w === undefined) return [];
    r.whiteouts.delete(base);
    const at = (n: string) => (base === '' ? n : `${base}/${n}`);
    const out: Buffer[] = [];
    if (w.opaque) out.push(synthetic(at('.wh..wh..opq'), 'file'));
    for (const n of sortByBytes(w.names)) out.push(synthetic(at(`.wh.${n}`), 'file'));
    return out;
  };
  // (a string: dirRel and the prefix are)
  const emitWhiteouts = (dirRel: string): Buffer[] => emitAt(String(tarName(dirRel)));

  // The prefix's own directories.
  if (r.prefix !== '') {
    const parts = r.prefix.split('/');
    for (let i = 1; i <= parts.length; i++)
      batch.add(synthetic(`${parts.slice(0, i).join('/')}/`, 'directory'));
  }

  // Depth-first, each directory's children in byte order, listed one
  // directory at a time (the tree is never listed up front).
  const stack: { abs: FsName; rel: FsName; names: FsName[]; i: number }[] = [];
  const list = (abs: FsName, rel: FsName) => {
    let names: FsName[];
    try {
      names = listNames(abs);
    } catch (e) {
      throw ioError(`cannot list ${String(abs)}`, e);
    }
    // (whiteouts are named by strings: a directory whose name is bytes has none)
    if (typeof rel === 'string') for (const b of emitWhiteouts(rel)) batch.add(b);
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
    const abs =
      typeof top.abs === 'string' && typeof name === 'string'
        ? join(top.abs, name)
        : joinName(top.abs, name);
    const rel = top.rel === '' ? name : joinName(top.rel, name);
    let st: Stats;
    try {
      st = lstatSync(abs);
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') continue; // vanished while walking
      throw ioError(`cannot stat ${String(abs)}`, e);
    }
    if (st.isSocket()) continue;
    if (r.filter !== undefined && !r.filter(String(rel), st)) continue;
    const base = { mode: st.mode & 0o7777, ...ids(st), mtime: mtimeOf(st), size: 0 };
    const name2 = tarName(rel);
    if (st.isDirectory()) {
      batch.add(encodeTarHeader({ ...base, name: joinName(name2, ''), type: 'directory' }));
      yield* batch.take();
      list(abs, rel);
      continue;
    }
    if (st.isSymbolicLink()) {
      let target: FsName;
      try {
        target = readLink(abs);
      } catch (e) {
        throw ioError(`cannot read link ${String(abs)}`, e);
      }
      batch.add(encodeTarHeader({ ...base, name: name2, type: 'symlink', linkname: target }));
      yield* batch.take();
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
      batch.add(encodeTarHeader(h));
      yield* batch.take();
      continue;
    }
    if (!st.isFile()) continue;
    if (st.nlink > 1) {
      let key: string;
      try {
        key = linkKey(st, () => lstatSync(abs, { bigint: true }));
      } catch (e) {
        throw ioError(`cannot stat ${String(abs)}`, e);
      }
      const first = hardlinks.get(key);
      if (first !== undefined) {
        batch.add(encodeTarHeader({ ...base, name: name2, type: 'link', linkname: first }));
        yield* batch.take();
        continue;
      }
      hardlinks.set(key, name2);
    }
    batch.add(encodeTarHeader({ ...base, name: name2, type: 'file', size: st.size }));
    let got = 0;
    if (st.size < smallFile) {
      // Small files in one synchronous read: a round trip to the thread
      // pool per file would cost more than the copy.
      let fd: number | undefined;
      try {
        fd = openSync(abs, openFlags);
        got = batch.readSync(fd, st.size);
      } catch (e) {
        throw ioError(`cannot read ${String(abs)}`, e);
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    } else {
      yield* batch.take();
      let file;
      try {
        file = await openAsync(abs, openFlags);
      } catch (e) {
        throw ioError(`cannot read ${String(abs)}`, e);
      }
      try {
        for (;;) {
          // (a function call: the loop above narrowed `aborted` to false)
          checkAborted(r.signal);
          let read: { n: number; grew: boolean; end: boolean };
          try {
            read = await batch.read(file, got, st.size - got);
          } catch (e) {
            throw ioError(`cannot read ${String(abs)}`, e);
          }
          got += read.n;
          yield* batch.take();
          if (read.grew) got = st.size + 1;
          if (read.grew || read.end || read.n === 0) break;
        }
      } finally {
        await file.close();
      }
    }
    if (got !== st.size) {
      throw new LadingError(
        ErrorCode.Io,
        got > st.size
          ? `${String(abs)} grew past its ${st.size} bytes while being read`
          : `${String(abs)} shrank from ${st.size} to ${got} bytes while being read`,
      );
    }
    batch.zeros(tarPadding(st.size));
    yield* batch.take();
  }
  // Whiteouts whose directory is not in the tree go last, in byte order.
  for (const dir of sortByBytes(r.whiteouts.keys())) for (const b of emitAt(dir)) batch.add(b);
  batch.add(tarTrailer);
  yield* batch.take();
  const rest = batch.rest();
  if (rest.length > 0) yield rest;
}

/**
 * directoryTar streams `dir` as a deterministic tar, with no temporary files:
 * entries depth-first with each directory's children in byte order of their
 * names, uid/gid 0 unless asked, mtimes clamped to SOURCE_DATE_EPOCH (0
 * when unset; `keepMtimes` keeps them), no atime/ctime, PAX headers for long names and huge files, symlinks as
 * links, hardlinks as link entries to the first path seen, sockets skipped.
 * @throws INVALID_ARGUMENT or UNSAFE_PATH for bad options; the stream fails
 *   with IO on file-system errors and ABORTED when the signal fires.
 */
export function directoryTar(dir: string, options: DirectoryTarOptions = {}): Readable {
  return walkStream(dir, resolveOptions(options), false);
}

/** walkStream is the walk as a byte stream; `pooled` takes its chunks from the block pool. */
function walkStream(dir: string, r: Resolved, pooled: boolean): Readable {
  return Readable.from(walkTar(dir, r, pooled), { objectMode: false, highWaterMark: chunkTarget });
}

/**
 * layerFromDirectory makes a re-openable, deterministic layer from a
 * directory tree (see {@link directoryTar}); each read walks the tree again.
 * @see docs/design.md (Layer)
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
    // The walk is this layer's own: its chunks may come from the block pool.
    () =>
      Promise.resolve({
        stream: walkStream(dir, resolveOptions(tarOptions), true),
        gzipped: false,
        pooled: true,
      }),
    defaultMediaType(options, undefined),
    options,
  );
}
