// extract is one walk over the layers' tar entries (~460 lines): whiteouts,
// links, modes, owners and times are applied in one pass and share its state;
// path safety, sparse files and new-file writes already live beside it.
import { mkdirSync, readlinkSync } from 'node:fs';
import {
  chmod,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  readdir,
  realpath,
  rename,
  rm,
  symlink,
} from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import {
  AbortedError,
  ErrorCode,
  LadingError,
  fileSystemError,
  isLadingError,
  throwIfAborted,
  type Layer,
} from '@lading/core';
import { makeDirectory } from '@lading/core/internal';
import { byteString, fsPath, lstatOrUndefined, shown } from './internal/byte-paths.js';
import { RawNames } from './internal/tar-check.js';
import { UndoJournal } from './internal/undo-journal.js';
import { owners, tarEntries, type TarEntry } from './internal/tar-entries.js';
import { safeRelative, unsafe } from './safe-path.js';
import {
  openNewFile,
  smallFile,
  writeAll,
  writeBatch,
  writeSmallFileSync,
} from './internal/new-file.js';
import { sparseOf, writeSparseFile } from './internal/sparse.js';

/**
 * mkfifoBinary runs the mkfifo binary. node:child_process is loaded only
 * here, when a tar holds a fifo: it costs every process that loads this
 * module 6–11 ms of start-up (Node 20–26) otherwise.
 */
async function mkfifoBinary(args: readonly string[]): Promise<void> {
  const { execFile } = await import('node:child_process');
  await promisify(execFile)('mkfifo', args);
}

/** ExtractOptions configure {@link extract}. */
export interface ExtractOptions {
  /** signal aborts the extraction (it rejects with ABORTED). */
  readonly signal?: AbortSignal;
  /**
   * chown restores uid/gid from the tar; honoured only when running as root.
   * setuid and setgid bits are kept only then: otherwise they are cleared,
   * so that a file the image made setuid for its own user never becomes
   * setuid for whoever extracts it.
   */
  readonly chown?: boolean;
  /** mtimes restores modification times (default true). */
  readonly mtimes?: boolean;
  /**
   * scoped takes the tar as a container would see it, with `dir` as `/`:
   * absolute entry names and absolute symlink targets start at `dir`, and
   * `..` stops at it (containerd's rule). By default (false) those are
   * refused with UNSAFE_PATH as escapes; symlinks that stay inside `dir`
   * are followed either way. Nothing is ever written outside `dir`.
   */
  readonly scoped?: boolean;
}

/** fifos numbers the temporary names of fifos made under another name. */
let fifos = 0;

/** maxLinks is how many symlinks one path may go through (Linux allows 40). */
const maxLinks = 40;

function isErrno(e: unknown, code: string): boolean {
  return (e as { code?: unknown } | null)?.code === code;
}

interface DirMeta {
  readonly abs: string;
  readonly mode: number;
  readonly mtime: Date | undefined;
}

/** LayerApplier writes one layer's tar entries under a root, never following symlinks. */
class LayerApplier {
  readonly #root: string;
  readonly #options: ExtractOptions;
  readonly #written = new Set<string>();
  readonly #dirs: DirMeta[] = [];
  readonly #chown: boolean;
  readonly #scoped: boolean;
  /** The bytes of names tar-stream cannot decode, from the tar's headers. */
  readonly #names = new RawNames();
  /** #journal, for a destination that held files, makes the extract undoable. */
  readonly #journal: UndoJournal | undefined;

  /** @param root the real path of the destination, as a byte string. */
  constructor(root: string, options: ExtractOptions, journal: UndoJournal | undefined) {
    this.#root = root;
    this.#options = options;
    this.#journal = journal;
    this.#scoped = options.scoped === true;
    this.#chown = options.chown === true && process.getuid?.() === 0;
  }

  /**
   * resolveDir walks the directory path `parts` under the root, component by
   * component, and returns where it really is. A symlink on the way is
   * followed while it stays inside the root; an absolute target or one that
   * climbs above the root is an escape, refused unless `scoped` (then it is
   * taken as the container would: from the root, `..` stopping there), so
   * the result is always inside the root. With `create: true`, missing directories are made and
   * a file in the way is replaced by one; with `'lookup'`, a missing
   * directory or a file in the way resolves to undefined (nothing is there).
   * @throws UNSAFE_PATH for a missing parent (with `create: false`), an escape,
   *   a symlink loop, or a symlink on the way that leads to something else than a directory.
   */
  async #resolveDir(
    parts: readonly string[],
    name: string,
    create: true | false,
  ): Promise<{ abs: string; rel: string }>;
  async #resolveDir(
    parts: readonly string[],
    name: string,
    create: 'lookup',
  ): Promise<{ abs: string; rel: string } | undefined>;
  async #resolveDir(
    parts: readonly string[],
    name: string,
    create: boolean | 'lookup',
  ): Promise<{ abs: string; rel: string } | undefined> {
    const done: string[] = [];
    const todo = [...parts];
    let links = 0;
    let viaLink = false;
    for (let p = todo.shift(); p !== undefined; p = todo.shift()) {
      if (p === '' || p === '.') continue;
      if (p === '..') {
        if (done.length === 0 && !this.#scoped) {
          throw unsafe(name, 'a symlink on its path leads above the root');
        }
        done.pop();
        continue;
      }
      const cur = join(this.#root, ...done, p);
      const st = lstatOrUndefined(cur);
      if (st?.isSymbolicLink() === true) {
        if (++links > maxLinks) throw unsafe(name, 'too many levels of symbolic links');
        const target = readlinkSync(fsPath(cur), { encoding: 'latin1' });
        if (target.startsWith('/')) {
          if (!this.#scoped) {
            throw unsafe(
              name,
              `parent ${JSON.stringify(shown(p))} is a symlink to ${JSON.stringify(shown(target))}, outside the root`,
            );
          }
          done.length = 0;
        }
        todo.unshift(...target.split('/'));
        viaLink = true;
        continue;
      }
      if (st === undefined) {
        if (create === 'lookup') return undefined;
        if (!create) throw unsafe(name, `${JSON.stringify(shown(p))} does not exist`);
        this.#journal?.made(cur);
        mkdirSync(fsPath(cur), { mode: 0o755 });
      } else if (!st.isDirectory()) {
        if (create === 'lookup') return undefined;
        if (!create) throw unsafe(name, `parent ${JSON.stringify(shown(p))} is not a directory`);
        if (viaLink) throw unsafe(name, `a symlink on its path leads to a non-directory`);
        await this.#remove(cur);
        this.#journal?.made(cur);
        mkdirSync(fsPath(cur), { mode: 0o755 });
      }
      done.push(p);
    }
    return { abs: join(this.#root, ...done), rel: done.join('/') };
  }

  /**
   * remove deletes `abs` whatever it is (a symlink itself, never its
   * target); with a journal, what was there before the extract is moved
   * aside instead.
   */
  async #remove(abs: string): Promise<void> {
    if (this.#journal !== undefined) await this.#journal.remove(abs);
    else await rm(fsPath(abs), { recursive: true, force: true });
  }

  /**
   * clear removes `abs` (a directory stays with `keepDir`) before the
   * extract makes something there.
   */
  async #clear(abs: string, keepDir: boolean): Promise<void> {
    const st = lstatOrUndefined(abs);
    if (st !== undefined && keepDir && st.isDirectory()) return;
    if (st !== undefined) await this.#remove(abs);
    this.#journal?.made(abs);
  }

  /** opaque hides every lower-layer child of `rel`, keeping what this layer wrote. */
  async #opaque(rel: string): Promise<void> {
    const abs = rel === '' ? this.#root : join(this.#root, rel);
    let names: string[];
    try {
      names = await readdir(fsPath(abs), { encoding: 'latin1' });
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return;
      throw e;
    }
    for (const n of names) {
      const childRel = rel === '' ? n : `${rel}/${n}`;
      const childAbs = join(abs, n);
      if (rel === '' && n === this.#journal?.name) continue;
      if (this.#written.has(childRel)) {
        const st = await lstat(fsPath(childAbs));
        if (st.isDirectory()) await this.#opaque(childRel);
      } else await this.#remove(childAbs);
    }
  }

  /**
   * mkfifo makes a fifo with the mkfifo binary, whose arguments are text: a
   * path that is not UTF-8 gets it under a temporary name in the root, then
   * renamed into place.
   */
  async #mkfifo(abs: string, mode: number): Promise<void> {
    const text = shown(abs);
    if (byteString(text) === abs) {
      await mkfifoBinary(['-m', mode.toString(8), text]);
      return;
    }
    const tmp = join(this.#root, `.lading-fifo-${String(process.pid)}-${String(fifos++)}`);
    await mkfifoBinary(['-m', mode.toString(8), shown(tmp)]);
    try {
      await rename(fsPath(tmp), fsPath(abs));
    } catch (e) {
      await rm(fsPath(tmp), { force: true });
      throw e;
    }
  }

  async #meta(
    abs: string,
    uid: number,
    gid: number,
    mtime: Date | undefined,
    mode = 0,
  ): Promise<void> {
    const path = fsPath(abs);
    if (this.#chown) {
      await lchown(path, uid, gid);
      // chown clears setuid/setgid: set them again for the restored owner.
      if ((mode & 0o6000) !== 0) await chmod(path, mode);
    }
    if (mtime !== undefined && this.#options.mtimes !== false) await lutimes(path, mtime, mtime);
  }

  async apply(tar: Readable): Promise<void> {
    for await (const entry of tarEntries(tar, this.#names)) {
      throwIfAborted(this.#options.signal);
      try {
        await this.#entry(entry);
      } catch (e) {
        throw tooLong(e, entry.header.name);
      }
    }
    // Directory modes and times last, deepest first, so read-only
    // directories do not block their own children.
    for (const d of this.#dirs.reverse()) {
      const st = lstatOrUndefined(d.abs);
      if (st?.isDirectory() !== true) continue;
      // A later entry may have turned a parent into a symlink: never chmod through it.
      const path = fsPath(d.abs);
      if ((await realpath(path, { encoding: 'latin1' })) !== d.abs) continue;
      this.#journal?.noteDirectory(d.abs, st);
      await chmod(path, d.mode);
      if (d.mtime !== undefined && this.#options.mtimes !== false)
        await lutimes(path, d.mtime, d.mtime);
    }
  }

  /**
   * whiteout deletes `target` in the directory `parts` (symlinked parents
   * resolved, escapes refused). A whiteout hides what lower layers wrote:
   * when its directory is missing, or is a file, there is nothing to hide,
   * and nothing is created or replaced (as umoci; containerd makes the
   * directories, and refuses a file in the way).
   * @throws INVALID_LAYER for `.wh.`, `.wh..` and `.wh...`
   */
  async #whiteout(parts: readonly string[], target: string, name: string): Promise<void> {
    if (target === '' || target === '.' || target === '..')
      throw new LadingError(ErrorCode.InvalidLayer, `invalid whiteout ${JSON.stringify(name)}`);
    const parent = await this.#resolveDir(parts, name, 'lookup');
    if (parent === undefined) return;
    const targetRel = parent.rel === '' ? target : `${parent.rel}/${target}`;
    // Whiteouts hide lower layers only, never what this layer wrote (nor
    // the journal).
    if (!this.#written.has(targetRel) && targetRel !== this.#journal?.name)
      await this.#remove(join(this.#root, targetRel));
  }

  async #entry(entry: TarEntry): Promise<void> {
    const h = entry.header;
    const { uid, gid } = owners(h);
    // Every name is looked up, in header order, before anything returns.
    const name = this.#names.bytes(h.name);
    const linkname = h.linkname == null ? '' : this.#names.bytes(h.linkname);
    const sparseName = h.pax?.['GNU.sparse.name'];
    const sparseBytes = sparseName === undefined ? undefined : this.#names.bytes(sparseName);
    const sparse = sparseOf(h);
    const named = safeRelative(
      sparse === undefined ? name : (sparseBytes ?? byteString(sparse.name)),
      this.#scoped,
      sparse?.name ?? h.name,
    );
    if (named === '') return; // the root itself
    const parts = named.split('/');
    const base = parts.pop() ?? '';
    if (base.startsWith('.wh.') && base !== '.wh..wh..opq') {
      await this.#whiteout(parts, base.slice(4), h.name);
      return;
    }
    // Paths below are where the entry really lands, symlinked parents resolved.
    const parent = await this.#resolveDir(parts, h.name, true);
    const parentRel = parent.rel;
    const rel = parentRel === '' ? base : `${parentRel}/${base}`;
    const abs = join(parent.abs, base);
    // setuid/setgid only with the owners they were meant for: kept as root
    // with chown, they would make the image's files setuid-root.
    const mode = h.mode & (this.#chown ? 0o7777 : 0o1777);
    const mtime = h.mtime instanceof Date ? h.mtime : undefined;

    if (base === '.wh..wh..opq') {
      await this.#opaque(parentRel);
      return;
    }
    switch (h.type) {
      case 'directory': {
        await this.#clear(abs, true);
        const there = lstatOrUndefined(abs);
        if (there === undefined) await mkdir(fsPath(abs), { mode: 0o700 });
        else this.#journal?.noteDirectory(abs, there);
        if (this.#chown) await lchown(fsPath(abs), uid, gid);
        this.#dirs.push({ abs, mode, mtime });
        break;
      }
      case 'file':
      case 'contiguous-file': {
        await this.#clear(abs, false);
        if (sparse !== undefined) {
          await writeSparseFile(fsPath(abs), entry, sparse, mode);
          await this.#meta(abs, uid, gid, mtime, mode);
          break;
        }
        if (h.size <= smallFile) {
          // Small files (most of an image's) are gathered (≤ 256 KiB) and
          // written with synchronous calls: four thread-pool round trips per
          // file cost more than the page-cache writes themselves.
          const chunks: Buffer[] = [];
          let total = 0;
          for await (const chunk of entry) {
            chunks.push(chunk);
            total += chunk.length;
          }
          writeSmallFileSync(fsPath(abs), mode, chunks, total);
          await this.#meta(abs, uid, gid, mtime, mode);
          break;
        }
        // O_EXCL | O_NOFOLLOW: never open through a link, never reuse a file.
        const fh = await openNewFile(fsPath(abs));
        let complete = false;
        try {
          await fh.chmod(mode);
          // tar-stream's entries are streamx streams of small chunks (16 KiB
          // from gunzip): gather them and write up to 1 MiB per syscall.
          const batch: Buffer[] = [];
          let batched = 0;
          for await (const chunk of entry) {
            batch.push(chunk);
            batched += chunk.length;
            if (batched >= writeBatch) {
              await writeAll(fh, batch, batched);
              batch.length = 0;
              batched = 0;
            }
          }
          if (batched > 0) await writeAll(fh, batch, batched);
          complete = true;
        } finally {
          await fh.close();
          // An entry the tar ends inside leaves no partial file behind.
          if (!complete) await rm(fsPath(abs), { force: true });
        }
        await this.#meta(abs, uid, gid, mtime, mode);
        break;
      }
      case 'symlink': {
        await this.#clear(abs, false);
        await symlink(fsPath(linkname), fsPath(abs));
        await this.#meta(abs, uid, gid, mtime);
        break;
      }
      case 'link': {
        const targetParts = safeRelative(linkname, this.#scoped, h.linkname ?? '').split('/');
        const targetBase = targetParts.pop() ?? '';
        if (targetBase === '') throw unsafe(h.name, 'hardlink to the root');
        const targetDir = await this.#resolveDir(targetParts, h.name, false);
        const targetAbs = join(targetDir.abs, targetBase);
        const st = lstatOrUndefined(targetAbs);
        if (st === undefined)
          throw unsafe(h.name, `hardlink target ${JSON.stringify(h.linkname)} does not exist`);
        if (st.isDirectory()) throw unsafe(h.name, 'hardlink to a directory');
        if (targetAbs === abs) break;
        await this.#clear(abs, false);
        await link(fsPath(targetAbs), fsPath(abs));
        break;
      }
      case 'fifo': {
        await this.#clear(abs, false);
        await this.#mkfifo(abs, mode);
        await this.#meta(abs, uid, gid, mtime);
        break;
      }
      default:
        // Devices need privileges and a trusted image; they are skipped.
        return;
    }
    this.#written.add(rel);
  }
}

/**
 * tooLong names the entry, not the path under the root (which may be a
 * staging directory, and thousands of bytes long), when the file system
 * refuses a name as too long; other errors pass.
 */
function tooLong(e: unknown, name: string): unknown {
  if (!isErrno(e, 'ENAMETOOLONG')) return e;
  const shownName = name.length > 100 ? `${name.slice(0, 60)}…${name.slice(-30)}` : name;
  return new LadingError(
    ErrorCode.Io,
    `entry ${JSON.stringify(shownName)} (${String(Buffer.byteLength(name))} bytes): a name is longer than the file system allows (255 bytes a component, 4096 a path)`,
    { cause: e },
  );
}

/**
 * typed gives an error met while applying layer `index` a code: file-system
 * errors become IO, anything else from the tar or gzip decoder (truncated,
 * corrupt, not a tar) INVALID_LAYER.
 */
function typed(e: unknown, index: number): unknown {
  if (isLadingError(e)) return e;
  const message = e instanceof Error ? e.message : String(e);
  if (typeof e === 'object' && e !== null && 'syscall' in e) {
    return new LadingError(ErrorCode.Io, `extracting layer ${index}: ${message}`, { cause: e });
  }
  return new LadingError(ErrorCode.InvalidLayer, `layer ${index} is not a valid tar: ${message}`, {
    cause: e,
  });
}

/**
 * extract applies layers in order into `dir` (created if missing): files,
 * directories, symlinks, hardlinks and fifos with their modes (and mtimes);
 * `.wh.<name>` whiteouts delete `<name>` from lower layers and
 * `.wh..wh..opq` hides a directory's lower contents. It never writes outside
 * `dir`: `..` components, absolute paths, hardlinks leaving the root and
 * paths through a symlink that leads out of it (absolute, or above the root)
 * are refused with UNSAFE_PATH; symlinked parents that stay inside are
 * followed (`lib -> usr/lib` then `lib/x` writes `usr/lib/x`); with
 * `scoped: true` escapes are taken as a container sees them instead (from
 * `dir`, `..` stopping there); an existing symlink at an entry's own path is
 * replaced, not followed. Ownership is restored only with `chown: true` when running as root.
 * Device nodes are skipped.
 * @see https://github.com/opencontainers/image-spec/blob/main/layer.md
 * A layer that ends right after its last entry's data, without padding and
 * end-of-archive blocks (what umoci 0.4.7 writes), is read completely, as
 * GNU tar, umoci and skopeo do; one cut inside an entry's data fails.
 * @throws UNSAFE_PATH for entries that would escape `dir`; INVALID_LAYER for a
 *   truncated or corrupt layer; IO for file-system errors (also when `dir`
 *   cannot be made: it exists as a file, say); ABORTED when the signal fires.
 */
export async function extract(
  layers: Iterable<Layer> | AsyncIterable<Layer>,
  dir: string,
  options: ExtractOptions = {},
): Promise<void> {
  throwIfAborted(options.signal);
  let root: string;
  try {
    await makeDirectory(dir);
    root = (await realpath(dir, { encoding: 'buffer' })).toString('latin1');
  } catch (e) {
    throw fileSystemError(e, dir, 'cannot extract into');
  }
  // Into a directory that holds files, the extract is undone when it fails.
  let journal: UndoJournal | undefined;
  try {
    if ((await readdir(fsPath(root))).length > 0) journal = new UndoJournal(root);
  } catch (e) {
    throw fileSystemError(e, dir, 'cannot extract into');
  }
  let index = 0;
  try {
    for await (const layer of layers) {
      throwIfAborted(options.signal);
      index++;
      const tar = layer.uncompressed();
      const onAbort = () => {
        tar.destroy(new AbortedError(options.signal?.reason));
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        await new LayerApplier(root, options, journal).apply(tar);
      } catch (e) {
        throw typed(e, index);
      } finally {
        options.signal?.removeEventListener('abort', onAbort);
      }
    }
  } catch (e) {
    const kept = await journal?.rollback();
    if (kept !== undefined && isLadingError(e)) {
      // (the directory could not be put back whole: say where the rest is)
      throw new LadingError(
        e.code,
        `${e.message}; ${dir} could not be restored whole: what was replaced is in ${kept}`,
        { cause: e },
      );
    }
    throw e;
  }
  await journal?.commit();
}
