import { execFile } from 'node:child_process';
import { constants as fsConstants, type Stats } from 'node:fs';
import {
  chmod,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  readdir,
  realpath,
  rm,
  symlink,
} from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { extract as tarExtract, type Header } from 'tar-stream';
import { AbortedError, ErrorCode, LadingError, throwIfAborted, type Layer } from '@lading/core';

const execFileP = promisify(execFile);

/** ExtractOptions configure {@link extract}. */
export interface ExtractOptions {
  /** signal aborts the extraction (it rejects with ABORTED). */
  readonly signal?: AbortSignal;
  /** chown restores uid/gid from the tar; honoured only when running as root. */
  readonly chown?: boolean;
  /** mtimes restores modification times (default true). */
  readonly mtimes?: boolean;
}

function unsafe(name: string, why: string): LadingError {
  return new LadingError(
    ErrorCode.UnsafePath,
    `refusing tar entry ${JSON.stringify(name)}: ${why}`,
  );
}

/**
 * safeRelative turns a tar path into a relative one: leading `/` and `./`
 * are dropped (absolute paths are taken relative to the root, as containerd
 * does), empty and `.` components removed; any `..` component is refused.
 * @throws UNSAFE_PATH for `..` components or NUL bytes.
 */
export function safeRelative(name: string): string {
  if (name.includes('\0')) throw unsafe(name, 'NUL byte in the path');
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw unsafe(name, 'the path has a ".." component');
  return parts.join('/');
}

function isErrno(e: unknown, code: string): boolean {
  return (e as { code?: unknown } | null)?.code === code;
}

async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await lstat(p);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return undefined;
    throw e;
  }
}

interface DirMeta {
  readonly abs: string;
  readonly mode: number;
  readonly mtime: Date | undefined;
}

/** TarEntry is what tar-stream's extractor yields: a (streamx) byte stream with its header. */
interface TarEntry extends AsyncIterable<Buffer> {
  readonly header: Header;
  resume(): unknown;
}

/** LayerApplier writes one layer's tar entries under a root, never following symlinks. */
class LayerApplier {
  readonly #root: string;
  readonly #options: ExtractOptions;
  readonly #written = new Set<string>();
  readonly #dirs: DirMeta[] = [];
  readonly #chown: boolean;

  constructor(root: string, options: ExtractOptions) {
    this.#root = root;
    this.#options = options;
    this.#chown = options.chown === true && process.getuid?.() === 0;
  }

  /**
   * parents makes sure every parent component of `rel` is a real directory
   * inside the root, creating missing ones. A parent that is a symlink is
   * refused: writing through it could land outside the root.
   */
  async #parents(rel: string, name: string, create: boolean): Promise<void> {
    const parts = rel.split('/');
    parts.pop();
    let cur = this.#root;
    for (const p of parts) {
      cur = join(cur, p);
      const st = await lstatOrUndefined(cur);
      if (st === undefined) {
        if (!create) throw unsafe(name, `${p} does not exist`);
        await mkdir(cur, { mode: 0o755 });
      } else if (st.isSymbolicLink()) {
        throw unsafe(
          name,
          `parent ${JSON.stringify(p)} is a symlink; lading never writes through links`,
        );
      } else if (!st.isDirectory()) {
        if (!create) throw unsafe(name, `parent ${JSON.stringify(p)} is not a directory`);
        await rm(cur, { force: true });
        await mkdir(cur, { mode: 0o755 });
      }
    }
  }

  /** clear removes `abs` whatever it is (a symlink itself, never its target). */
  async #clear(abs: string, keepDir: boolean): Promise<void> {
    const st = await lstatOrUndefined(abs);
    if (st === undefined) return;
    if (keepDir && st.isDirectory()) return;
    await rm(abs, { recursive: true, force: true });
  }

  /** opaque hides every lower-layer child of `rel`, keeping what this layer wrote. */
  async #opaque(rel: string): Promise<void> {
    const abs = rel === '' ? this.#root : join(this.#root, rel);
    let names: string[];
    try {
      names = await readdir(abs);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return;
      throw e;
    }
    for (const n of names) {
      const childRel = rel === '' ? n : `${rel}/${n}`;
      const childAbs = join(abs, n);
      if (this.#written.has(childRel)) {
        const st = await lstat(childAbs);
        if (st.isDirectory()) await this.#opaque(childRel);
      } else await rm(childAbs, { recursive: true, force: true });
    }
  }

  async #meta(abs: string, uid: number, gid: number, mtime: Date | undefined): Promise<void> {
    if (this.#chown) await lchown(abs, uid, gid);
    if (mtime !== undefined && this.#options.mtimes !== false) await lutimes(abs, mtime, mtime);
  }

  async apply(tar: Readable): Promise<void> {
    const ex = tarExtract();
    // tar-stream's extractor is a streamx Writable; feed it by hand with
    // backpressure (node's pipeline does not see it finish).
    const feeding = (async () => {
      for await (const chunk of tar as AsyncIterable<Buffer>) {
        if (!ex.write(chunk)) {
          await new Promise<void>((resolve) => {
            ex.once('drain', () => {
              resolve();
            });
          });
        }
      }
      (ex as unknown as { end(): void }).end();
    })();
    feeding.catch((e: unknown) => {
      ex.destroy(e as Error);
    });
    try {
      for await (const entry of ex) {
        throwIfAborted(this.#options.signal);
        await this.#entry(entry as unknown as TarEntry);
        // Skip whatever body the entry did not consume.
        entry.resume();
      }
      await feeding;
    } catch (e) {
      tar.destroy();
      ex.destroy();
      throw e;
    }
    // Directory modes and times last, deepest first, so read-only
    // directories do not block their own children.
    for (const d of this.#dirs.reverse()) {
      const st = await lstatOrUndefined(d.abs);
      if (st?.isDirectory() !== true) continue;
      await chmod(d.abs, d.mode);
      if (d.mtime !== undefined && this.#options.mtimes !== false)
        await lutimes(d.abs, d.mtime, d.mtime);
    }
  }

  async #entry(entry: TarEntry): Promise<void> {
    const h = entry.header;
    const rel = safeRelative(h.name);
    if (rel === '') return; // the root itself
    const cut = rel.lastIndexOf('/');
    const parentRel = cut < 0 ? '' : rel.slice(0, cut);
    const base = rel.slice(cut + 1);
    const abs = join(this.#root, rel);
    await this.#parents(rel, h.name, true);
    const mode = h.mode & 0o7777;
    const mtime = h.mtime instanceof Date ? h.mtime : undefined;

    if (base === '.wh..wh..opq') {
      await this.#opaque(parentRel);
      return;
    }
    if (base.startsWith('.wh.')) {
      const target = base.slice(4);
      if (target === '' || target === '.' || target === '..') {
        throw new LadingError(
          ErrorCode.InvalidArgument,
          `invalid whiteout ${JSON.stringify(h.name)}`,
        );
      }
      const targetRel = parentRel === '' ? target : `${parentRel}/${target}`;
      // Whiteouts hide lower layers only, never what this layer wrote.
      if (!this.#written.has(targetRel))
        await rm(join(this.#root, targetRel), { recursive: true, force: true });
      return;
    }

    switch (h.type) {
      case 'directory': {
        await this.#clear(abs, true);
        if ((await lstatOrUndefined(abs)) === undefined) await mkdir(abs, { mode: 0o700 });
        if (this.#chown) await lchown(abs, h.uid, h.gid);
        this.#dirs.push({ abs, mode, mtime });
        break;
      }
      case 'file':
      case 'contiguous-file': {
        await this.#clear(abs, false);
        // O_EXCL | O_NOFOLLOW: never open through a link, never reuse a file.
        const fh = await open(
          abs,
          fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW,
          0o600,
        );
        try {
          await fh.chmod(mode);
          // tar-stream's entries are streamx streams; write them chunk by chunk.
          for await (const chunk of entry) await fh.write(chunk);
        } finally {
          await fh.close();
        }
        await this.#meta(abs, h.uid, h.gid, mtime);
        break;
      }
      case 'symlink': {
        await this.#clear(abs, false);
        await symlink(h.linkname, abs);
        await this.#meta(abs, h.uid, h.gid, mtime);
        break;
      }
      case 'link': {
        const targetRel = safeRelative(h.linkname);
        if (targetRel === '') throw unsafe(h.name, 'hardlink to the root');
        await this.#parents(targetRel, h.name, false);
        const targetAbs = join(this.#root, targetRel);
        const st = await lstatOrUndefined(targetAbs);
        if (st === undefined)
          throw unsafe(h.name, `hardlink target ${JSON.stringify(h.linkname)} does not exist`);
        if (st.isDirectory()) throw unsafe(h.name, 'hardlink to a directory');
        if (targetAbs === abs) break;
        await this.#clear(abs, false);
        await link(targetAbs, abs);
        break;
      }
      case 'fifo': {
        await this.#clear(abs, false);
        await execFileP('mkfifo', ['-m', mode.toString(8), abs]);
        await this.#meta(abs, h.uid, h.gid, mtime);
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
 * extract applies layers in order into `dir` (created if missing): files,
 * directories, symlinks, hardlinks and fifos with their modes (and mtimes);
 * `.wh.<name>` whiteouts delete `<name>` from lower layers and
 * `.wh..wh..opq` hides a directory's lower contents. It never writes outside
 * `dir`: `..` components, hardlinks leaving the root and writes through a
 * symlinked parent are refused with UNSAFE_PATH; absolute paths are taken
 * relative to `dir`; an existing symlink at an entry's path is replaced, not
 * followed. Ownership is restored only with `chown: true` when running as root.
 * Device nodes are skipped.
 * @see https://github.com/opencontainers/image-spec/blob/main/layer.md
 * @throws UNSAFE_PATH for entries that would escape `dir`; ABORTED when the signal fires.
 */
export async function extract(
  layers: Iterable<Layer> | AsyncIterable<Layer>,
  dir: string,
  options: ExtractOptions = {},
): Promise<void> {
  throwIfAborted(options.signal);
  await mkdir(dir, { recursive: true });
  const root = await realpath(dir);
  for await (const layer of layers) {
    throwIfAborted(options.signal);
    const tar = layer.uncompressed();
    const onAbort = () => {
      tar.destroy(new AbortedError(options.signal?.reason));
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await new LayerApplier(root, options).apply(tar);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
  }
}
