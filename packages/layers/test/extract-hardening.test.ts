import { lstat, mkdir, open, readFile, readdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { afterEach, describe, expect, it } from 'vitest';
import { scratchDirs } from '@lading/testing';
import { isLadingError, layerFromBytes } from '@lading/core';
import { extract } from '../src/index.js';
import { collect, makeTar, run } from './helpers.js';

const dirs = scratchDirs('lading-harden-');
afterEach(() => dirs.removeAll());
const scratch = (): Promise<string> => dirs.make();

async function modeOf(p: string): Promise<number> {
  return (await lstat(p)).mode & 0o7777;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => new Error('expected a rejection'),
    (err: unknown) => err,
  );
}

describe('extract setuid and setgid', () => {
  const tar = () =>
    makeTar([
      { name: 'shared', type: 'directory', mode: 0o2775 },
      { name: 'tmp', type: 'directory', mode: 0o1777 },
      { name: 'bin/su', body: 'x', mode: 0o4755 },
      { name: 'bin/wall', body: 'x', mode: 0o2755 },
    ]);

  it('clears setuid and setgid (keeping sticky) when owners are not restored', async () => {
    const root = await scratch();
    await extract([layerFromBytes(await tar())], root);
    expect(await modeOf(join(root, 'bin/su'))).toBe(0o755);
    expect(await modeOf(join(root, 'bin/wall'))).toBe(0o755);
    expect(await modeOf(join(root, 'shared'))).toBe(0o775);
    expect(await modeOf(join(root, 'tmp'))).toBe(0o1777);
  });

  it('keeps them with chown when running as root (and clears them otherwise)', async () => {
    const root = await scratch();
    await extract([layerFromBytes(await tar())], root, { chown: true });
    const asRoot = process.getuid?.() === 0;
    expect(await modeOf(join(root, 'bin/su'))).toBe(asRoot ? 0o4755 : 0o755);
    expect(await modeOf(join(root, 'bin/wall'))).toBe(asRoot ? 0o2755 : 0o755);
  });
});

describe('extract sparse entries', () => {
  /** gnuTarSparse makes a 1 MiB file with two data runs and archives it with GNU tar --sparse. */
  async function gnuTarSparse(flags: string[]): Promise<{ archive: Buffer; original: Buffer }> {
    const src = await scratch();
    const file = join(src, 'sparse.bin');
    await writeFile(file, '');
    await truncate(file, 1024 * 1024);
    const fh = await open(file, 'r+');
    await fh.write(Buffer.from('hello in the middle'), 0, 19, 500_000);
    await fh.write(Buffer.from('the end'), 0, 7, 1024 * 1024 - 7);
    await fh.close();
    const archive = join(src, 'sparse.tar');
    const made = await run('tar', ['--sparse', ...flags, '-C', src, '-cf', archive, 'sparse.bin']);
    expect(made.code).toBe(0);
    return { archive: await readFile(archive), original: await readFile(file) };
  }

  it.each([
    ['0.1', ['--format=posix', '--sparse-version=0.1']],
    ['1.0', ['--format=posix', '--sparse-version=1.0']],
  ])('extracts a PAX %s sparse file under its real name with its bytes', async (_, flags) => {
    const { archive, original } = await gnuTarSparse(flags);
    const root = await scratch();
    await extract([layerFromBytes(archive)], root);
    expect(await readdir(root)).toEqual(['sparse.bin']);
    expect((await readFile(join(root, 'sparse.bin'))).equals(original)).toBe(true);
  });

  it.each([
    ['GNU', ['--format=gnu']],
    ['PAX 0.0', ['--format=posix', '--sparse-version=0.0']],
  ])('refuses a %s sparse file with UNSUPPORTED and writes nothing', async (_, flags) => {
    const { archive } = await gnuTarSparse(flags);
    const root = await scratch();
    const err = await rejection(extract([layerFromBytes(archive)], root));
    expect(isLadingError(err, 'UNSUPPORTED')).toBe(true);
    expect(await readdir(root)).toEqual([]);
  });

  it('refuses a PAX 1.0 map that points past the real size with INVALID_ARGUMENT', async () => {
    const map = Buffer.alloc(512);
    map.write('1\n2000000\n10\n');
    const p = pack();
    p.entry(
      {
        name: 'GNUSparseFile.0/evil',
        size: 512 + 10,
        pax: {
          'GNU.sparse.major': '1',
          'GNU.sparse.minor': '0',
          'GNU.sparse.name': 'evil',
          'GNU.sparse.realsize': '1000',
        },
      },
      Buffer.concat([map, Buffer.alloc(10, 1)]),
    );
    p.finalize();
    const root = await scratch();
    const err = await rejection(
      extract([layerFromBytes(await collect(p as unknown as Readable))], root),
    );
    expect(isLadingError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect(await readdir(root)).toEqual([]);
  });
});

describe('extract truncated entries', () => {
  it('leaves no partial file when an entry claims more bytes than arrive', async () => {
    const whole = await makeTar([
      { name: 'first.txt', body: 'complete' },
      { name: 'big.bin', body: Buffer.alloc(100_000, 7) },
    ]);
    // Cut inside big.bin's data: first.txt (header + 1 block), big.bin's header, 1000 bytes.
    const cut = whole.subarray(0, 512 * 3 + 1000);
    const root = await scratch();
    await mkdir(root, { recursive: true });
    const err = await rejection(extract([layerFromBytes(cut)], root));
    expect(isLadingError(err, 'INVALID_LAYER')).toBe(true);
    expect((await readdir(root)).sort()).toEqual(['first.txt']);
  });
});
