import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { chmod, lchown, lutimes, mkdir, rename, rm } from 'node:fs/promises';
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
    if (lstatOrUndefined(abs) === undefined) return;
    if (this.#made.has(abs)) {
      await rm(fsPath(abs), { recursive: true, force: true });
      return;
    }
    this.#noteParent(abs);
    this.#noteParent(this.#dir);
    this.#ready ??= mkdir(fsPath(this.#dir), { mode: 0o700 }).then(() => undefined);
    await this.#ready;
    const aside = join(this.#dir, String(this.#asides++));
    await rename(fsPath(abs), fsPath(aside));
    this.#steps.push({ kind: 'moved', abs, aside });
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

  /** commit deletes what was set aside: the extract is done. */
  async commit(): Promise<void> {
    if (this.#ready !== undefined) await rm(fsPath(this.#dir), { recursive: true, force: true });
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
        const path = fsPath(step.abs);
        await rm(path, { recursive: true, force: true });
        if (step.kind === 'moved') await rename(fsPath(step.aside), path);
      } catch {
        complete = false;
      }
    }
    if (!complete) return shown(this.#dir);
    if (this.#ready !== undefined) {
      await rm(fsPath(this.#dir), { recursive: true, force: true });
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
