import { describe, expect, it } from 'vitest';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { isLadingError, layerFromBytes, type Layer } from '@lading/core';
import { extract, layerFromDirectory } from '../src/index.js';
import { safeRelative } from '../src/safe-path.js';
import { encodedTar, makeTar, tempDir, type TarEntry } from './helpers.js';

async function layer(entries: TarEntry[]): Promise<Layer> {
  return layerFromBytes(await makeTar(entries));
}

/** sandbox makes `<tmp>/root` (the extraction target) next to `<tmp>/outside`. */
function sandbox(): { root: string; outside: string; top: string } {
  const top = tempDir('lading-x-');
  const root = join(top, 'root');
  const outside = join(top, 'outside');
  mkdirSync(root);
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret'), 'keep me');
  return { root, outside, top };
}

function tree(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const n of readdirSync(join(dir, rel)).sort()) {
    const r = rel === '' ? n : `${rel}/${n}`;
    const st = lstatSync(join(dir, r));
    out.push(st.isDirectory() ? `${r}/` : r);
    if (st.isDirectory()) out.push(...tree(dir, r));
  }
  return out;
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  expect(isLadingError(caught, code as 'UNSAFE_PATH')).toBe(true);
}

describe('extract', () => {
  it('applies layers in order with modes, symlinks, hardlinks, whiteouts and opaque directories', async () => {
    const { root } = sandbox();
    const base = await layer([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/conf', body: 'v1' },
      { name: 'bin/', type: 'directory' },
      { name: 'bin/tool', body: '#!/bin/sh\n', mode: 0o755 },
      { name: 'bin/old', body: 'old' },
      { name: 'bin/sub/', type: 'directory' },
      { name: 'bin/sub/deep', body: 'deep' },
      { name: 'file1', body: 'f1' },
      { name: 'keep', body: 'k' },
      { name: 'gone/', type: 'directory' },
      { name: 'gone/x', body: 'x' },
    ]);
    const upper = await layer([
      { name: '.wh.file1', body: '' },
      { name: '.wh.gone', body: '' },
      { name: 'bin/', type: 'directory', mode: 0o750 },
      { name: 'bin/.wh..wh..opq', body: '' },
      { name: 'bin/new', body: 'new' },
      { name: 'etc/conf', body: 'v2' },
      { name: 'etc/link', type: 'symlink', linkname: 'conf' },
      { name: 'etc/hard', type: 'link', linkname: 'etc/conf' },
      { name: 'run/', type: 'directory' },
      { name: 'run/pipe', type: 'fifo' },
    ]);
    await extract([base, upper], root);
    expect(tree(root)).toEqual([
      'bin/',
      'bin/new',
      'etc/',
      'etc/conf',
      'etc/hard',
      'etc/link',
      'keep',
      'run/',
      'run/pipe',
    ]);
    expect(readFileSync(join(root, 'etc/conf'), 'utf8')).toBe('v2');
    expect(readlinkSync(join(root, 'etc/link'))).toBe('conf');
    expect(statSync(join(root, 'etc/hard')).ino).toBe(statSync(join(root, 'etc/conf')).ino);
    expect(statSync(join(root, 'bin')).mode & 0o7777).toBe(0o750);
    expect(lstatSync(join(root, 'run/pipe')).isFIFO()).toBe(true);
  });

  it('keeps modes from the tar, but not setuid when owners are not restored', async () => {
    const { root } = sandbox();
    await extract([await layer([{ name: 'x', body: 'x', mode: 0o4751 }])], root);
    expect(statSync(join(root, 'x')).mode & 0o7777).toBe(0o751);
  });

  it('round-trips a directory layer', async () => {
    const src = sandbox().root;
    mkdirSync(join(src, 'a/b'), { recursive: true });
    writeFileSync(join(src, 'a/b/c'), randomBytes(2 * 1024 * 1024));
    writeFileSync(join(src, 'top'), 'top');
    const { root } = sandbox();
    await extract([layerFromDirectory(src)], root);
    expect(tree(root)).toEqual(tree(src));
    expect(readFileSync(join(root, 'a/b/c')).equals(readFileSync(join(src, 'a/b/c')))).toBe(true);
  });

  it('refuses ../ entries with UNSAFE_PATH and writes nothing outside', async () => {
    const { root, outside, top } = sandbox();
    await expectCode(
      extract([await layer([{ name: '../outside/evil', body: 'pwn' }])], root),
      'UNSAFE_PATH',
    );
    await expectCode(
      extract([await layer([{ name: 'a/../../evil', body: 'pwn' }])], root),
      'UNSAFE_PATH',
    );
    expect(readdirSync(outside)).toEqual(['secret']);
    expect(readdirSync(top).sort()).toEqual(['outside', 'root']);
  });

  it('refuses absolute paths, or takes them from the root when scoped', async () => {
    const { root } = sandbox();
    const name = `lading-abs-${randomBytes(6).toString('hex')}`;
    await expectCode(
      extract([await layer([{ name: `/${name}/x`, body: 'inside' }])], root),
      'UNSAFE_PATH',
    );
    expect(readdirSync(root)).toEqual([]);
    await extract([await layer([{ name: `/${name}/x`, body: 'inside' }])], root, {
      scoped: true,
    });
    expect(readFileSync(join(root, name, 'x'), 'utf8')).toBe('inside');
    expect(existsSync(`/${name}`)).toBe(false);
  });

  it('follows symlinked parents that stay inside the root', async () => {
    const { root } = sandbox();
    await extract(
      [
        await layer([
          { name: 'usr/', type: 'directory' },
          { name: 'usr/lib/', type: 'directory' },
          { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
          { name: 'lib/x', body: 'via lib' },
          { name: 'usr/bin/', type: 'directory' },
          { name: 'usr/bin/up', type: 'symlink', linkname: '../lib' },
        ]),
        await layer([
          { name: 'usr/bin/up/y', body: 'via ..' },
          { name: 'h', type: 'link', linkname: 'lib/x' },
        ]),
      ],
      root,
    );
    expect(lstatSync(join(root, 'lib')).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(root, 'usr/lib/x'), 'utf8')).toBe('via lib');
    expect(readFileSync(join(root, 'usr/lib/y'), 'utf8')).toBe('via ..');
    expect(statSync(join(root, 'h')).ino).toBe(statSync(join(root, 'usr/lib/x')).ino);
  });

  it('refuses paths through a symlink that leaves the root, in the same or a later layer', async () => {
    const { root, outside, top } = sandbox();
    await expectCode(
      extract(
        [
          await layer([
            { name: 'evil', type: 'symlink', linkname: outside },
            { name: 'evil/pwned', body: 'pwn' },
          ]),
        ],
        root,
      ),
      'UNSAFE_PATH',
    );
    const { root: root2, outside: outside2 } = sandbox();
    await expectCode(
      extract(
        [
          await layer([{ name: 'up', type: 'symlink', linkname: '../outside' }]),
          await layer([{ name: 'up/secret', body: 'overwritten' }]),
        ],
        root2,
      ),
      'UNSAFE_PATH',
    );
    // Whiteouts through such a link are refused too.
    await expectCode(
      extract([await layer([{ name: 'up/.wh.secret', body: '' }])], root2),
      'UNSAFE_PATH',
    );
    expect(readdirSync(outside)).toEqual(['secret']);
    expect(readFileSync(join(outside2, 'secret'), 'utf8')).toBe('keep me');
    expect(readdirSync(top).sort()).toEqual(['outside', 'root']);
  });

  it('scoped: takes escaping symlinks from the root, as a container would', async () => {
    const { root, outside } = sandbox();
    await extract(
      [
        await layer([
          { name: 'evil', type: 'symlink', linkname: outside },
          { name: 'evil/pwned', body: 'pwn' },
        ]),
        await layer([{ name: 'up', type: 'symlink', linkname: '../../../outside' }]),
        await layer([
          { name: 'up/secret', body: 'overwritten' },
          { name: 'evil/.wh.secret', body: '' },
          { name: 'evil/.wh..wh..opq', body: '' },
        ]),
      ],
      root,
      { scoped: true },
    );
    // The opaque marker hid `pwned` (a lower layer's) where `evil` leads: inside.
    expect(lstatSync(join(root, outside)).isDirectory()).toBe(true);
    expect(existsSync(join(root, outside, 'pwned'))).toBe(false);
    expect(readFileSync(join(root, 'outside/secret'), 'utf8')).toBe('overwritten');
    expect(readdirSync(outside)).toEqual(['secret']);
    expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('keep me');
  });

  it('never chmods a directory through a parent that later became a symlink', async () => {
    const { root, outside } = sandbox();
    mkdirSync(join(outside, 'sub'), { mode: 0o755 });
    await extract(
      [
        await layer([
          { name: 'd/', type: 'directory' },
          { name: 'd/sub/', type: 'directory', mode: 0o700 },
          { name: 'd', type: 'symlink', linkname: outside },
        ]),
      ],
      root,
    );
    expect(lstatSync(join(root, 'd')).isSymbolicLink()).toBe(true);
    expect(statSync(join(outside, 'sub')).mode & 0o777).toBe(0o755);
  });

  it('refuses symlink loops on an entry path', async () => {
    const { root } = sandbox();
    await expectCode(
      extract(
        [
          await layer([
            { name: 'a', type: 'symlink', linkname: 'b' },
            { name: 'b', type: 'symlink', linkname: 'a' },
            { name: 'a/x', body: 'loop' },
          ]),
        ],
        root,
      ),
      'UNSAFE_PATH',
    );
  });

  it('replaces a symlink at an entry path instead of writing through it', async () => {
    const { root, outside } = sandbox();
    await extract(
      [
        await layer([{ name: 'f', type: 'symlink', linkname: join(outside, 'secret') }]),
        await layer([{ name: 'f', body: 'inside' }]),
      ],
      root,
    );
    expect(lstatSync(join(root, 'f')).isFile()).toBe(true);
    expect(readFileSync(join(root, 'f'), 'utf8')).toBe('inside');
    expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('keep me');
  });

  it('refuses hardlinks that leave the root', async () => {
    const { root, outside } = sandbox();
    await expectCode(
      extract([await layer([{ name: 'h', type: 'link', linkname: '../outside/secret' }])], root),
      'UNSAFE_PATH',
    );
    // Through a symlinked directory inside the root.
    await expectCode(
      extract(
        [
          await layer([
            { name: 's', type: 'symlink', linkname: outside },
            { name: 'h', type: 'link', linkname: 's/secret' },
          ]),
        ],
        root,
      ),
      'UNSAFE_PATH',
    );
    expect(existsSync(join(root, 'h'))).toBe(false);
    expect(statSync(join(outside, 'secret')).nlink).toBe(1);
  });

  it('whiteouts do not remove what the same layer wrote', async () => {
    const { root } = sandbox();
    await extract(
      [
        await layer([
          { name: 'a', body: 'a' },
          { name: '.wh.a', body: '' },
        ]),
      ],
      root,
    );
    expect(readFileSync(join(root, 'a'), 'utf8')).toBe('a');
  });

  it('a whiteout under a file or a missing directory changes nothing', async () => {
    const { root } = sandbox();
    writeFileSync(join(root, 'mine'), 'the user kept this');
    await extract(
      [
        await layer([{ name: 'a', body: 'lower' }]),
        await layer([
          { name: 'a/.wh.x', body: '' },
          { name: 'mine/.wh.x', body: '' },
          { name: 'x/y/.wh.z', body: '' },
        ]),
      ],
      root,
    );
    expect(readFileSync(join(root, 'a'), 'utf8')).toBe('lower');
    expect(readFileSync(join(root, 'mine'), 'utf8')).toBe('the user kept this');
    expect(tree(root)).toEqual(['a', 'mine']);
  });

  it('names the entry, in one short line, when a name is too long for the file system', async () => {
    const { root } = sandbox();
    const long = `dir/${'n'.repeat(300)}`;
    let caught: unknown;
    try {
      await extract([await layer([{ name: long, body: 'x' }])], root);
    } catch (e) {
      caught = e;
    }
    expect(caught).toMatchObject({ code: 'IO' });
    const message = (caught as Error).message;
    expect(message).toMatch(
      /^entry "dir\/n+…n+" \(304 bytes\): a name is longer than the file system allows/,
    );
    expect(message).not.toContain(root);
    expect(message.length).toBeLessThan(250);
  });

  it('refuses .wh., .wh.. and .wh... as INVALID_LAYER', async () => {
    for (const name of ['.wh.', 'd/.wh..', '.wh...']) {
      const { root } = sandbox();
      await expectCode(extract([await layer([{ name, body: '' }])], root), 'INVALID_LAYER');
    }
  });
});

describe('safeRelative', () => {
  it('normalises and refuses', () => {
    expect(safeRelative('/etc//x/./y/', true)).toBe('etc/x/y');
    expect(safeRelative('etc//x/./y/')).toBe('etc/x/y');
    expect(safeRelative('/')).toBe('');
    expect(() => safeRelative('/etc/x')).toThrow(expect.objectContaining({ code: 'UNSAFE_PATH' }));
    expect(safeRelative('./a')).toBe('a');
    expect(() => safeRelative('a/../b')).toThrow(expect.objectContaining({ code: 'UNSAFE_PATH' }));
  });
});

describe('extract owners', () => {
  it('restores owner ids past ustar from PAX records with chown (as root)', async () => {
    const tar = encodedTar({
      header: { name: 'owned', uid: 2_500_000, gid: 3_000_000 },
      body: 'x',
    });
    const dir = join(tempDir('lading-x-'), 'root');
    await extract([layerFromBytes(tar, { compressed: false })], dir, { chown: true });
    const st = statSync(join(dir, 'owned'));
    // Owners are restored only as root; otherwise the file is the runner's.
    const root = process.getuid?.() === 0;
    expect([st.uid, st.gid]).toEqual(
      root ? [2_500_000, 3_000_000] : [process.getuid?.(), process.getgid?.()],
    );
  });
});
