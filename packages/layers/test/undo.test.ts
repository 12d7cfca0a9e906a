import {
  chmod,
  lstat,
  mkdir,
  readFile,
  readdir,
  readlink,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { scratchDirs } from '@lading/testing';
import { isLadingError, layerFromBytes } from '@lading/core';
import { extract, extractVerified } from '../src/index.js';
import { makeTar } from './helpers.js';

const dirs = scratchDirs('lading-undo-');
afterEach(() => dirs.removeAll());

/** snapshot lists every path under `root` with its type, mode, mtime and content. */
async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    const abs = rel === '' ? root : join(root, rel);
    const st = await lstat(abs);
    const meta = `${(st.mode & 0o7777).toString(8)} ${String(st.mtimeMs)}`;
    if (st.isDirectory()) {
      out[`${rel}/`] = meta;
      for (const n of (await readdir(abs)).sort()) await walk(rel === '' ? n : `${rel}/${n}`);
    } else if (st.isSymbolicLink()) out[rel] = `-> ${await readlink(abs)}`;
    else out[rel] = `${meta} ${await readFile(abs, 'utf8')}`;
  };
  await walk('');
  return out;
}

/** userTree makes a directory holding what a user had before pulling into it. */
async function userTree(): Promise<string> {
  const root = await dirs.make();
  await mkdir(join(root, 'etc/keep'), { recursive: true });
  await mkdir(join(root, 'opaque/inner'), { recursive: true });
  await writeFile(join(root, 'etc/app.conf'), 'mine');
  await writeFile(join(root, 'etc/keep/notes'), 'my notes');
  await writeFile(join(root, 'gone.txt'), 'whiteout me');
  await writeFile(join(root, 'opaque/inner/x'), 'hidden by an opaque whiteout');
  await writeFile(join(root, 'was-file'), 'a file a directory replaces');
  await symlink('etc/app.conf', join(root, 'link'));
  await chmod(join(root, 'etc'), 0o750);
  for (const p of ['etc/keep', 'etc', 'opaque/inner', 'opaque', ''])
    await utimes(join(root, p), new Date(1_000_000_000), new Date(1_000_000_000));
  return root;
}

async function layers(lastEntry: {
  name: string;
  body?: string;
  type?: 'file' | 'link';
  linkname?: string;
}) {
  const first = await makeTar([
    { name: 'etc/', type: 'directory', mode: 0o755 },
    { name: 'etc/app.conf', body: 'from the image' },
    { name: '.wh.gone.txt', body: '' },
    { name: 'opaque/.wh..wh..opq', body: '' },
    { name: 'opaque/new', body: 'new' },
    { name: 'was-file/', type: 'directory' },
    { name: 'was-file/inside', body: 'in' },
    { name: 'link', body: 'a file where a symlink was' },
  ]);
  const second = await makeTar([
    { name: 'etc/keep/notes', body: 'overwritten' },
    { name: 'fresh/deep/file', body: 'made' },
    lastEntry,
  ]);
  return [layerFromBytes(first), layerFromBytes(second)];
}

describe('extract into a directory that holds files', () => {
  it('puts everything back when a later layer is refused', async () => {
    for (const bad of [
      { name: '../escape', body: 'out' },
      { name: 'hard', type: 'link' as const, linkname: 'no/such/target' },
    ]) {
      const root = await userTree();
      const before = await snapshot(root);
      for (const run of [extract, extractVerified]) {
        const err = await run(await layers(bad), root).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isLadingError(err, 'UNSAFE_PATH'), bad.name).toBe(true);
        expect(await snapshot(root)).toEqual(before);
      }
    }
  });

  it('never reaches outside through a symlink that replaced a directory it made', async () => {
    const outside = await dirs.make();
    await writeFile(join(outside, 'precious'), 'not the extract’s');
    await mkdir(join(outside, 'sub'));
    for (const steps of [
      // a directory made, filled, then replaced by a symlink out of the tree
      [
        { name: 'd/', type: 'directory' as const },
        { name: 'd/precious', body: 'layer' },
        { name: 'd/sub/', type: 'directory' as const },
        { name: 'd', type: 'symlink' as const, linkname: outside },
      ],
      // a directory made, filled, whited out, then made again as a file
      [
        { name: 'd/', type: 'directory' as const },
        { name: 'd/x', body: 'x' },
        { name: '.wh.d', body: '' },
        { name: 'd', body: 'now a file' },
      ],
    ]) {
      const root = await userTree();
      const before = await snapshot(root);
      const tar = await makeTar([...steps, { name: '../escape', body: 'fails' }]);
      const err = await extract([layerFromBytes(tar)], root).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isLadingError(err, 'UNSAFE_PATH')).toBe(true);
      expect((err as Error).message).not.toContain('could not be restored');
      expect(await snapshot(root)).toEqual(before);
      expect((await readdir(outside)).sort()).toEqual(['precious', 'sub']);
    }
  });

  it('puts everything back when aborted', async () => {
    const root = await userTree();
    const before = await snapshot(root);
    const stop = new AbortController();
    const [first, second] = await layers({ name: 'last', body: 'x' });
    const aborting = {
      ...second!,
      mediaType: second!.mediaType,
      digest: () => second!.digest(),
      diffId: () => second!.diffId(),
      size: () => second!.size(),
      compressed: () => second!.compressed(),
      uncompressed: () => {
        stop.abort();
        return second!.uncompressed();
      },
    };
    const err = await extract([first!, aborting], root, { signal: stop.signal }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isLadingError(err, 'ABORTED')).toBe(true);
    expect(await snapshot(root)).toEqual(before);
  });

  it('applies every layer and leaves nothing of its own when it succeeds', async () => {
    const root = await userTree();
    await extract(await layers({ name: 'last', body: 'x' }), root);
    const after = await snapshot(root);
    expect(Object.keys(after).filter((p) => p.includes('.lading-undo'))).toEqual([]);
    expect(after['etc/app.conf']).toMatch(/ from the image$/);
    expect(after['etc/keep/notes']).toMatch(/ overwritten$/);
    expect(after['gone.txt']).toBeUndefined();
    expect(after['opaque/inner/']).toBeUndefined();
    expect(after['opaque/new']).toMatch(/ new$/);
    expect(after['was-file/inside']).toMatch(/ in$/);
    expect(after.link).toMatch(/ a file where a symlink was$/);
    expect(after['fresh/deep/file']).toMatch(/ made$/);
    expect(after.last).toMatch(/ x$/);
  });
});
