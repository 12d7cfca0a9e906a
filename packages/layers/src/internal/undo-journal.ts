import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { chmod, cp, lchown, lutimes, mkdir, readdir, realpath, rename, rm } from 'node:fs/promises';
import { ErrorCode, LadingError } from '@lading/core';
import { dirname, join } from 'node:path';
import { fsPath, lstatOrUndefined, shown } from './byte-paths.js';

/** A step the journal can undo. */
type Step =
  | { readonly kind: 'made'; readonly abs: string }
  | { readonly kind: 'moved'; readonly abs: string; readonly aside: string }
  | {
      readonly kind: 'meta';
      readonly abs: string;
      readonly mode: number;
      readonly uid: number;
      readonly gid: number;
      readonly atime: Date;
      readonly mtime: Date;
    };

/**
 * UndoJournal makes an extract into a directory that already holds files
 * all or nothing. What the extract would delete or replace is moved aside
 * first, into a hidden directory in the root (a rename: one file system, no
 * copy); what it makes, and the mode, owner and times of a directory it
 * changes, are noted. When the extract fails (an unsafe entry in the third
 * layer, a full disk, Ctrl-C), {@link rollback} undoes every step, last
 * first, and the directory is as it was; when it succeeds, {@link commit}
 * deletes what was set aside, the deletion the extract meant.
 *
 * Paths are byte strings, as everywhere in extract.
 */
export class UndoJournal {
  /** name is the journal directory's name in the root, which extract leaves alone. */
  readonly name = `.lading-undo-${String(process.pid)}-${randomBytes(6).toString('hex')}`;
  readonly #root: string;
  readonly #steps: Step[] = [];
  /** #made holds the paths this extract made: removing one needs no copy. */
  readonly #made = new Set<string>();
  /** #noted holds the directories whose metadata was noted. */
  readonly #noted = new Set<string>();
  #ready: Promise<void> | undefined;
  #asides = 0;

  /** @param root the real path of the destination, as a byte string. */
  constructor(root: string) {
    this.#root = root;
  }

  get #dir(): string {
    return join(this.#root, this.name);
  }

  /** made notes that the extract is about to make `abs` (nothing is there now). */
  made(abs: string): void {
    if (this.#made.has(abs)) return;
    this.#noteParent(abs);
    this.#made.add(abs);
    this.#steps.push({ kind: 'made', abs });
  }

  /** noteParent notes the times of the directory holding `abs`, which a change in it moves. */
  #noteParent(abs: string): void {
    const parent = dirname(abs);
    if (this.#made.has(parent) || this.#noted.has(parent)) return;
    const st = lstatOrUndefined(parent);
    if (st?.isDirectory() === true) this.noteDirectory(parent, st);
  }

  /**
   * remove takes whatever is at `abs` out of the tree: what the extract made
   * is deleted, what was there before is moved aside.
   */
  async remove(abs: string): Promise<void> {
    const st = lstatOrUndefined(abs);
    if (st === undefined) return;
    if (this.#made.has(abs)) {
      // (made again later, it is a new step: rollback undoes the steps in
      // exactly the reverse order, so no path it touches has changed kind
      // since the step it undoes)
      await rm(fsPath(abs), { recursive: true, force: true });
      this.#made.delete(abs);
      return;
    }
    this.#noteParent(abs);
    this.#noteParent(this.#dir);
    this.#ready ??= mkdir(fsPath(this.#dir), { mode: 0o700 }).then(() => undefined);
    await this.#ready;
    const aside = join(this.#dir, String(this.#asides++));
    await move(abs, aside, st);
    this.#steps.push({ kind: 'moved', abs, aside });
  }

  /**
   * where tells whether the directory holding `abs` is really where `abs`
   * says, inside the root (no symlink on the way): `here`; `gone` when it
   * does not exist; `elsewhere` otherwise.
   */
  async #where(abs: string): Promise<'here' | 'gone' | 'elsewhere'> {
    const parent = dirname(abs);
    if (parent !== this.#root && !parent.startsWith(`${this.#root}/`)) return 'elsewhere';
    try {
      return (await realpath(fsPath(parent), { encoding: 'latin1' })) === parent
        ? 'here'
        : 'elsewhere';
    } catch (err) {
      return (err as { code?: unknown }).code === 'ENOENT' ? 'gone' : 'elsewhere';
    }
  }

  /** noteDirectory notes the metadata of the directory `abs` before the extract changes it. */
  noteDirectory(abs: string, st: Stats): void {
    if (this.#made.has(abs) || this.#noted.has(abs)) return;
    this.#noted.add(abs);
    this.#steps.push({
      kind: 'meta',
      abs,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      atime: st.atime,
      mtime: st.mtime,
    });
  }

  /**
   * commit deletes what was set aside: the extract is done.
   * @throws IO when it cannot (the journal directory stays; the error names it)
   */
  async commit(): Promise<void> {
    if (this.#ready === undefined) return;
    try {
      await removeAll(this.#dir);
    } catch (err) {
      throw new LadingError(
        ErrorCode.Io,
        `the extract is complete, but what it replaced could not be deleted: it is in ${shown(this.#dir)}`,
        { cause: err },
      );
    }
  }

  /**
   * rollback undoes every step, last first, then deletes the journal
   * directory. A step that cannot be undone is passed over; the journal
   * directory is then kept, and the answer names it.
   * @returns undefined when everything was restored, else the journal directory
   */
  async rollback(): Promise<string | undefined> {
    let complete = true;
    for (const step of this.#steps.reverse()) {
      try {
        if (step.kind === 'meta') {
          await restore(step);
          continue;
        }
        // Never through a symlink: the parent must be the directory it was
        // (a path changed by something the journal did not see is left).
        // What was made under a directory already undone is gone with it.
        const where = await this.#where(step.abs);
        if (where === 'gone' && step.kind === 'made') continue;
        if (where !== 'here') {
          complete = false;
          continue;
        }
        await rm(fsPath(step.abs), { recursive: true, force: true });
        if (step.kind === 'moved') {
          const st = lstatOrUndefined(step.aside);
          if (st !== undefined) await move(step.aside, step.abs, st);
        }
      } catch {
        complete = false;
      }
    }
    if (!complete) return shown(this.#dir);
    if (this.#ready !== undefined) {
      await removeAll(this.#dir);
      // (removing the journal moved the root's times once more)
      const root = this.#steps.find((s) => s.kind === 'meta' && s.abs === this.#root);
      if (root?.kind === 'meta') await restore(root).catch(() => undefined);
    }
    return undefined;
  }
}

/** restore puts back a directory's noted mode, owner (as root) and times. */
async function restore(step: Extract<Step, { kind: 'meta' }>): Promise<void> {
  if (lstatOrUndefined(step.abs)?.isDirectory() !== true) return;
  const path = fsPath(step.abs);
  if (process.getuid?.() === 0) await lchown(path, step.uid, step.gid);
  await chmod(path, step.mode);
  await lutimes(path, step.atime, step.mtime);
}

/**
 * move renames `from` to `to` (`st` is `from`'s lstat). A directory without
 * write permission cannot change parents (its `..` entry changes): it is
 * made writable for the rename and given its mode back. Across file systems
 * (a mount point inside the destination) it is copied, then deleted.
 */
async function move(from: string, to: string, st: Stats): Promise<void> {
  const locked = st.isDirectory() && (st.mode & 0o200) === 0;
  if (locked) await chmod(fsPath(from), (st.mode & 0o7777) | 0o200);
  try {
    await rename(fsPath(from), fsPath(to));
  } catch (err) {
    const source = fsPath(from);
    const target = fsPath(to);
    // (cp takes text paths: a name that is not ASCII stays where it is)
    if (
      (err as { code?: unknown }).code !== 'EXDEV' ||
      typeof source !== 'string' ||
      typeof target !== 'string'
    ) {
      if (locked) await chmod(source, st.mode & 0o7777).catch(() => undefined);
      throw err;
    }
    await cp(source, target, {
      recursive: true,
      verbatimSymlinks: true,
      preserveTimestamps: true,
      errorOnExist: true,
      force: false,
    });
    await removeAll(from);
  }
  if (locked) await chmod(fsPath(to), st.mode & 0o7777);
}

/**
 * removeAll deletes a tree; when a directory without write permission keeps
 * its entries from being unlinked, every directory is made writable first.
 */
async function removeAll(path: string): Promise<void> {
  try {
    await rm(fsPath(path), { recursive: true, force: true });
    return;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
  }
  const open = async (p: string): Promise<void> => {
    if (lstatOrUndefined(p)?.isDirectory() !== true) return;
    await chmod(fsPath(p), 0o700);
    for (const name of await readdir(fsPath(p), { encoding: 'latin1' })) await open(join(p, name));
  };
  await open(path);
  await rm(fsPath(path), { recursive: true, force: true });
}
