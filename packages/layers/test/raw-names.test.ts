// A file system holds names as bytes, and so do tar headers (ustar fields,
// GNU ././@LongLink records, PAX path/linkpath records): a layer built on a
// system whose names are Latin-1, or hold stray bytes, carries names that
// are not UTF-8. Decoding them as UTF-8 turns every bad byte into U+FFFD,
// which writes the wrong name and merges names that differ only there
// (`a\xff`, `a\xfe` and the valid `a\uFFFD`). GNU tar restores the bytes, so
// these tests take its extraction of the same archive as the reference.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import {
  linkSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { layerFromBytes } from '@lading/core';
import { encodeTarHeader, tarPadding, tarTrailer } from '@lading/core/internal';
import { extract, extractVerified, flatten, layerFromDirectory } from '../src/index.js';
import { collect, tempDir } from './helpers.js';

type Part = string | number[] | Buffer;

/** raw joins strings (as UTF-8) and byte lists into one name. */
function raw(...parts: Part[]): Buffer {
  return Buffer.concat(
    parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))),
  );
}

/** under joins a directory and a relative name as bytes. */
function under(dir: string | Buffer, rel: Buffer): Buffer {
  return raw(dir, '/', rel);
}

/**
 * show writes bytes so that a failed comparison reads well and stays exact:
 * printable ASCII as it is, every other byte (and `\`) as `\xNN`.
 */
function show(b: Buffer): string {
  let s = '';
  for (const c of b) {
    s +=
      c >= 0x20 && c < 0x7f && c !== 0x5c
        ? String.fromCharCode(c)
        : `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return s;
}

interface Node {
  readonly path: string;
  readonly type: 'directory' | 'file' | 'symlink' | 'other';
  readonly content?: string;
  readonly target?: string;
  /** links lists every path of the file's inode, so hardlinks are compared too. */
  readonly links?: string;
}

/** walk lists the tree under `root` by bytes, sorted by byte order of the path. */
function walk(root: string): Node[] {
  const found: { rel: Buffer; abs: Buffer }[] = [];
  const visit = (dir: Buffer, rel: Buffer | undefined): void => {
    for (const name of readdirSync(dir, { encoding: 'buffer' })) {
      const r = rel === undefined ? name : raw(rel, '/', name);
      const abs = under(dir, name);
      found.push({ rel: r, abs });
      if (lstatSync(abs).isDirectory()) visit(abs, r);
    }
  };
  visit(Buffer.from(root), undefined);
  found.sort((a, b) => Buffer.compare(a.rel, b.rel));
  const inodes = new Map<string, string[]>();
  for (const f of found) {
    const st = lstatSync(f.abs);
    if (!st.isFile()) continue;
    const key = `${st.dev}:${st.ino}`;
    inodes.set(key, [...(inodes.get(key) ?? []), show(f.rel)]);
  }
  return found.map(({ rel, abs }): Node => {
    const st = lstatSync(abs);
    const path = show(rel);
    if (st.isDirectory()) return { path, type: 'directory' };
    if (st.isSymbolicLink()) {
      return { path, type: 'symlink', target: show(readlinkSync(abs, { encoding: 'buffer' })) };
    }
    if (st.isFile()) {
      return {
        path,
        type: 'file',
        content: show(readFileSync(abs)),
        links: inodes.get(`${st.dev}:${st.ino}`)!.join(' | '),
      };
    }
    return { path, type: 'other' };
  });
}

const longDir = raw('m'.repeat(60), '/n', [0xfe], 'n'.repeat(60));
const deep = raw(longDir, '/q', [0xff]);

/**
 * sourceTree fills `dir` with names GNU tar stores in every format. With
 * `long`, it adds a symlink target and a hardlink target over 100 bytes:
 * GNU format stores them in ././@LongLink records and PAX in linkpath
 * records, while ustar has no room for them (its long path goes through the
 * prefix field instead).
 */
function sourceTree(dir: string, long: boolean): void {
  const at = (...parts: Part[]): Buffer => under(dir, raw(...parts));
  mkdirSync(at('d', [0xfe]));
  writeFileSync(at('d', [0xfe], '/f', [0xff, 0xfe]), 'inside a non-UTF-8 directory');
  writeFileSync(at('caf', [0xe9]), 'latin-1 name');
  writeFileSync(at('caf\u00e9'), 'utf-8 name');
  // Three names that UTF-8 decoding makes one: a\uFFFD.
  writeFileSync(at('a', [0xff]), 'a ff');
  writeFileSync(at('a', [0xfe]), 'a fe');
  writeFileSync(at('a\uFFFD'), 'a, then U+FFFD encoded');
  symlinkSync(raw('d', [0xfe], '/f', [0xff, 0xfe]), at('link'));
  symlinkSync(raw('nowhere', [0xe9]), at('l', [0xfd]));
  linkSync(at('d', [0xfe], '/f', [0xff, 0xfe]), at('hard'));
  mkdirSync(under(dir, longDir), { recursive: true });
  writeFileSync(under(dir, deep), 'deep');
  if (long) {
    symlinkSync(raw('t'.repeat(100), [0xfd]), at('longlink'));
    // After `deep` in name order, so the link entry names the long path.
    linkSync(under(dir, deep), at('zhard'));
  }
}

// GNU tar converts names for PAX records through the locale's charset: pin
// it so the archives do not depend on the runner's environment.
const env = { ...process.env, LC_ALL: 'C' };

function gnuPack(src: string, format: string): Buffer {
  return execFileSync('tar', [`--format=${format}`, '--sort=name', '-cf', '-', '-C', src, '.'], {
    env,
    maxBuffer: 64 * 1024 * 1024,
  });
}

function gnuUnpack(tar: Buffer, dest: string): void {
  mkdirSync(dest, { recursive: true });
  execFileSync('tar', ['-xf', '-', '-C', dest], { env, input: tar });
}

const formats = ['gnu', 'posix', 'ustar'] as const;

/** twoLayers makes a test's directory with the trees of a lower and an upper layer in it. */
function twoLayers(): { top: string; lower: string; upper: string } {
  const top = tempDir('lading-raw-');
  const lower = join(top, 'lower');
  const upper = join(top, 'upper');
  mkdirSync(lower);
  mkdirSync(upper);
  return { top, lower, upper };
}

describe('extract keeps names that are not UTF-8 byte for byte', () => {
  it.each(formats)('restores a GNU tar --format=%s archive as GNU tar does', async (format) => {
    const top = tempDir('lading-raw-');
    const src = join(top, 'src');
    mkdirSync(src);
    sourceTree(src, format !== 'ustar');
    const tar = gnuPack(src, format);

    const reference = join(top, 'gnu');
    gnuUnpack(tar, reference);
    // The comparison below means something only if GNU tar kept every byte.
    expect(walk(reference)).toEqual(walk(src));

    const out = join(top, 'lading');
    await extract([layerFromBytes(tar)], out);
    expect(walk(out)).toEqual(walk(reference));
  });

  it('restores a directory layer of such a tree as the tree', async () => {
    const top = tempDir('lading-raw-');
    const src = join(top, 'src');
    mkdirSync(src);
    sourceTree(src, true);
    const out = join(top, 'out');
    await extract([layerFromDirectory(src)], out);
    expect(walk(out)).toEqual(walk(src));
  });

  it('applies whiteouts and opaque markers to the names their bytes spell, and to no other', async () => {
    const { top, lower, upper } = twoLayers();
    const file = (root: string, body: string, ...parts: Part[]): void => {
      writeFileSync(under(root, raw(...parts)), body);
    };
    const dir = (root: string, ...parts: Part[]): void => {
      mkdirSync(under(root, raw(...parts)));
    };
    // Beside each target sits a name that UTF-8 decoding would confuse
    // with it: a whiteout or opaque marker must spare those.
    dir(lower, 'd', [0xff]);
    file(lower, 'x', 'd', [0xff], '/x');
    dir(lower, 'd', [0xfe]);
    file(lower, 'z', 'd', [0xfe], '/z');
    file(lower, 'w ff', 'd', [0xfe], '/w', [0xff]);
    file(lower, 'w fe', 'd', [0xfe], '/w', [0xfe]);
    file(lower, 'f fe', 'f', [0xfe]);
    file(lower, 'f fd', 'f', [0xfd]);
    file(lower, 'f fffd', 'f\uFFFD');
    dir(lower, 'g', [0xfe]);
    file(lower, 'k', 'g', [0xfe], '/k');
    dir(lower, 'g', [0xfd]);
    file(lower, 'k', 'g', [0xfd], '/k');

    file(upper, '', '.wh.f', [0xfe]);
    file(upper, '', '.wh.g', [0xfe]);
    dir(upper, 'd', [0xfe]);
    file(upper, '', 'd', [0xfe], '/.wh.w', [0xff]);
    dir(upper, 'd', [0xff]);
    file(upper, '', 'd', [0xff], '/.wh..wh..opq');
    file(upper, 'y', 'd', [0xff], '/y');

    const out = join(top, 'out');
    await extract(
      [layerFromBytes(gnuPack(lower, 'posix')), layerFromBytes(gnuPack(upper, 'posix'))],
      out,
    );
    const d = (...parts: Part[]): Node => ({ path: show(raw(...parts)), type: 'directory' });
    const f = (content: string, ...parts: Part[]): Node => {
      const path = show(raw(...parts));
      return { path, type: 'file', content, links: path };
    };
    expect(walk(out)).toEqual([
      d('d', [0xfe]),
      f('w fe', 'd', [0xfe], '/w', [0xfe]),
      f('z', 'd', [0xfe], '/z'),
      d('d', [0xff]),
      f('y', 'd', [0xff], '/y'),
      f('f fffd', 'f\uFFFD'),
      f('f fd', 'f', [0xfd]),
      d('g', [0xfd]),
      f('k', 'g', [0xfd], '/k'),
    ]);
  });

  it.each(formats)(
    'writes the same tree into a destination whose own path is non-ASCII UTF-8 (--format=%s)',
    async (format) => {
      const top = tempDir('lading-raw-');
      const src = join(top, 'src');
      mkdirSync(src);
      sourceTree(src, format !== 'ustar');
      const tar = gnuPack(src, format);
      const parent = join(top, '\u00fcn\u00efcode');
      const reference = join(parent, 'gnu');
      gnuUnpack(tar, reference);
      const out = join(parent, 'out');
      await extract([layerFromBytes(tar)], out);
      expect(walk(out)).toEqual(walk(reference));
      // The destination is named by its UTF-8 bytes: nothing lands beside
      // it under another encoding of the same string.
      expect(readdirSync(Buffer.from(top), { encoding: 'buffer' }).map(show).sort()).toEqual(
        [show(Buffer.from('\u00fcn\u00efcode')), 'src'].sort(),
      );
      expect(readdirSync(parent).sort()).toEqual(['gnu', 'out']);
    },
  );

  it('takes a name from the last PAX header before its entry, as tar-stream does', async () => {
    const top = tempDir('lading-raw-');
    const entry = (name: string | Buffer, body: string): Buffer => {
      const h = encodeTarHeader({
        name,
        type: 'file',
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: body.length,
        mtime: 0,
      });
      return Buffer.concat([h, Buffer.from(body), Buffer.alloc(tarPadding(body.length))]);
    };
    /** paxOnly is the PAX header encodeTarHeader writes for `h`, without its entry. */
    const paxOnly = (name: string | Buffer, uname?: string): Buffer =>
      encodeTarHeader({
        name,
        type: 'file',
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        ...(uname === undefined ? {} : { uname }),
      }).subarray(0, -512);
    // The first entry has two PAX headers: the second, without a path,
    // replaces the first, so it is named by its ustar field. The path the
    // first one held decodes like the next entry's: it must not be taken
    // for it.
    const tar = Buffer.concat([
      paxOnly(raw('a', [0xff])),
      paxOnly('x', 'u'.repeat(40)),
      entry('plain', '1'),
      entry(raw('a', [0xfe]), '2'),
      tarTrailer,
    ]);
    const out = join(top, 'out');
    await extract([layerFromBytes(tar, { compressed: false })], out);
    const f = (content: string, ...parts: Part[]): Node => {
      const path = show(raw(...parts));
      return { path, type: 'file', content, links: path };
    };
    expect(walk(out)).toEqual([f('2', 'a', [0xfe]), f('1', 'plain')]);
  });

  it.each(['absent', 'empty'] as const)(
    'moves such names into place after verifying, into an %s destination',
    async (state) => {
      const top = tempDir('lading-raw-');
      const src = join(top, 'src');
      mkdirSync(src);
      sourceTree(src, true);
      const tar = gnuPack(src, 'posix');
      const reference = join(top, 'gnu');
      gnuUnpack(tar, reference);
      // An empty destination gets the staged tree's top-level names one by one.
      const out = join(top, 'out');
      if (state === 'empty') mkdirSync(out);
      await extractVerified([layerFromBytes(tar)], out);
      expect(walk(out)).toEqual(walk(reference));
    },
  );
});

describe('flatten keeps names that are not UTF-8 byte for byte', () => {
  it.each(formats)(
    'writes a --format=%s archive that GNU tar restores as the tree',
    async (format) => {
      const top = tempDir('lading-raw-');
      const src = join(top, 'src');
      mkdirSync(src);
      sourceTree(src, format !== 'ustar');
      const reference = join(top, 'gnu');
      const tar = gnuPack(src, format);
      gnuUnpack(tar, reference);
      const flat = join(top, 'flat');
      gnuUnpack(await collect(flatten([layerFromBytes(tar)])), flat);
      expect(walk(flat)).toEqual(walk(reference));
    },
  );

  it('applies whiteouts by the bytes of the names across layers', async () => {
    const { top, lower, upper } = twoLayers();
    writeFileSync(under(lower, raw('f', [0xfe])), 'gone');
    writeFileSync(under(lower, raw('f', [0xfd])), 'kept');
    writeFileSync(under(lower, raw('f\uFFFD')), 'kept too');
    writeFileSync(under(upper, raw('.wh.f', [0xfe])), '');
    writeFileSync(under(upper, raw('f', [0xfc])), 'new');
    const flat = join(top, 'flat');
    gnuUnpack(
      await collect(
        flatten([layerFromBytes(gnuPack(lower, 'posix')), layerFromBytes(gnuPack(upper, 'posix'))]),
      ),
      flat,
    );
    const f = (content: string, ...parts: Part[]): Node => {
      const path = show(raw(...parts));
      return { path, type: 'file', content, links: path };
    };
    expect(walk(flat)).toEqual([
      f('kept too', 'f\uFFFD'),
      f('new', 'f', [0xfc]),
      f('kept', 'f', [0xfd]),
    ]);
  });
});
