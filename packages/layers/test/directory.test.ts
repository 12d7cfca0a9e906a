import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  truncateSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  chmodSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { extract as tarExtract, type Header } from 'tar-stream';
import { layerFromBytes } from '@lading/core';
import { directoryTar, layerFromDirectory, streamLayer } from '../src/index.js';
import { collect, pseudoRandom, run, tempDir, textish } from './helpers.js';

function tmp(): string {
  return tempDir('lading-dir-');
}

async function entries(tar: Buffer): Promise<{ header: Header; body: Buffer }[]> {
  const ex = tarExtract();
  const out: { header: Header; body: Buffer }[] = [];
  const done = (async () => {
    for await (const e of ex) {
      out.push({ header: e.header, body: await collect(e as unknown as Readable) });
    }
  })();
  ex.end(tar);
  await done;
  return out;
}

function fixture(): string {
  const d = tmp();
  mkdirSync(join(d, 'b/sub'), { recursive: true });
  mkdirSync(join(d, 'a'));
  writeFileSync(join(d, 'a/small.txt'), 'hello\n');
  writeFileSync(join(d, 'b/sub/big.bin'), pseudoRandom(3 * 1024 * 1024 + 17));
  writeFileSync(join(d, 'b/text.txt'), textish(200_000));
  chmodSync(join(d, 'a/small.txt'), 0o755);
  symlinkSync('../a/small.txt', join(d, 'b/link'));
  linkSync(join(d, 'a/small.txt'), join(d, 'b/hard'));
  const long = 'x'.repeat(60) + '/' + 'y'.repeat(80);
  mkdirSync(join(d, 'x'.repeat(60)));
  writeFileSync(join(d, long), 'long name');
  execFileSync('mkfifo', [join(d, 'a/pipe')]);
  return d;
}

describe('directoryTar', () => {
  it('writes a sorted tar with dirs, symlinks, hardlinks, long names and fifos that GNU tar reads', async () => {
    const d = fixture();
    const tar = await collect(directoryTar(d));
    const es = await entries(tar);
    const names = es.map((e) => e.header.name);
    expect(names).toEqual([
      'a/',
      'a/pipe',
      'a/small.txt',
      'b/',
      'b/hard',
      'b/link',
      'b/sub/',
      'b/sub/big.bin',
      'b/text.txt',
      'x'.repeat(60) + '/',
      'x'.repeat(60) + '/' + 'y'.repeat(80),
    ]);
    const by = new Map(es.map((e) => [e.header.name, e]));
    expect(by.get('a/pipe')!.header.type).toBe('fifo');
    expect(by.get('a/small.txt')!.header.mode).toBe(0o755);
    expect(by.get('a/small.txt')!.body.toString()).toBe('hello\n');
    // The hardlink's first sighting is a/small.txt; b/hard links to it.
    expect(by.get('b/hard')!.header).toMatchObject({
      type: 'link',
      linkname: 'a/small.txt',
      size: 0,
    });
    expect(by.get('b/link')!.header).toMatchObject({ type: 'symlink', linkname: '../a/small.txt' });
    expect(by.get('b/sub/big.bin')!.body.equals(pseudoRandom(3 * 1024 * 1024 + 17))).toBe(true);
    for (const e of es) {
      expect(e.header.uid).toBe(0);
      expect(e.header.gid).toBe(0);
      expect(e.header.uname).toBe('');
    }
    const t = await run('tar', ['-tvf', '-'], tar);
    expect(t.code).toBe(0);
    expect(t.stderr).toBe('');
    expect(t.stdout).toContain('y'.repeat(80));
    expect(t.stdout).toContain('b/hard link to a/small.txt');
    expect(t.stdout).toMatch(/^p.* a\/pipe$/m);
  });

  it('writes long names in the ustar prefix field where they split, else in PAX, as GNU tar reads them', async () => {
    const d = tmp();
    const deep = ['node_modules', '.pnpm', '@scope+package-name@1.2.3_peer@4.5.6', 'node_modules'];
    const split = [...deep, '@scope', 'package-name', 'dist', 'esm', 'index.js'].join('/'); // 107
    const lastLong = [...deep, 'f'.repeat(120)].join('/'); // its last part alone is over 100
    const veryLong = [...deep, ...Array<string>(6).fill('d'.repeat(30)), 'file.js'].join('/'); // 262
    for (const name of [split, lastLong, veryLong]) {
      mkdirSync(join(d, name, '..'), { recursive: true });
      writeFileSync(join(d, name), name);
    }
    expect(split.length).toBeGreaterThan(100);
    expect(veryLong.length).toBeGreaterThan(256);
    const tar = await collect(directoryTar(d));
    const es = await entries(tar);
    const files = es.filter((e) => e.header.type === 'file');
    expect(files.map((e) => e.header.name).sort()).toEqual([split, lastLong, veryLong].sort());
    for (const e of files) expect(e.body.toString()).toBe(e.header.name);
    // Each file's ustar header: its name and prefix fields, and whether a
    // PAX header came before it.
    const headers: { name: string; prefix: string; pax: boolean }[] = [];
    let paxBefore = false;
    const text = (b: Buffer, off: number, len: number): string =>
      b
        .subarray(off, off + len)
        .toString('latin1')
        .replace(/\0.*$/s, '');
    for (let at = 0; at + 512 <= tar.length; at += 512) {
      const block = tar.subarray(at, at + 512);
      if (text(block, 257, 6) !== 'ustar') continue;
      if (block[156] === 0x78) paxBefore = true;
      else {
        if (block[156] === 0x30) {
          headers.push({
            name: text(block, 0, 100),
            prefix: text(block, 345, 155),
            pax: paxBefore,
          });
        }
        paxBefore = false;
      }
      at += Math.ceil((parseInt(text(block, 124, 12), 8) || 0) / 512) * 512;
    }
    expect(headers).toEqual([
      { name: 'index.js', prefix: split.slice(0, -'/index.js'.length), pax: false },
      // Sorted by name; the ustar name field keeps the first 100 bytes.
      { name: veryLong.slice(0, 100), prefix: '', pax: true },
      { name: lastLong.slice(0, 100), prefix: '', pax: true },
    ]);
    const out = tmp();
    const x = await run('tar', ['-xf', '-', '-C', out], tar);
    expect(x.code).toBe(0);
    expect(x.stderr).toBe('');
    for (const name of [split, lastLong, veryLong]) {
      expect(readFileSync(join(out, name), 'utf8')).toBe(name);
    }
  });

  it('keeps names and link targets that are not UTF-8 byte for byte, as GNU tar restores them', async () => {
    // Bytes a file system may hold but UTF-8 cannot decode: Node lists them
    // as U+FFFD, a name that opens nothing.
    const d = tmp();
    const raw = (...parts: (string | number[] | Buffer)[]): Buffer =>
      Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
    const dir = raw(d, '/dir', [0xfe]);
    const file = raw(dir, '/f', [0xff, 0xfe]);
    mkdirSync(dir);
    writeFileSync(file, 'inside');
    writeFileSync(raw(d, '/top', [0xe9]), 'latin-1 name');
    linkSync(file, raw(d, '/hard'));
    symlinkSync(raw('target', [0xff]), raw(d, '/link'));
    // A valid name that holds U+FFFD itself stays a UTF-8 name.
    writeFileSync(join(d, 'ok\uFFFD'), 'replacement character');
    const seen: string[] = [];
    const filter = (p: string): boolean => {
      seen.push(p);
      return true;
    };
    const tar = await collect(directoryTar(d, { filter }));
    expect(seen).toHaveLength(6);

    const out = tmp();
    const x = await run('tar', ['-xf', '-', '-C', out], tar);
    expect(x.stderr).toBe('');
    expect(x.code).toBe(0);
    const names = (p: Buffer) =>
      readdirSync(p, { encoding: 'buffer' })
        .map((b) => b.toString('hex'))
        .sort();
    expect(names(Buffer.from(out))).toEqual(names(Buffer.from(d)));
    const outDir = raw(out, '/dir', [0xfe]);
    expect(names(outDir)).toEqual([raw('f', [0xff, 0xfe]).toString('hex')]);
    expect(readFileSync(raw(outDir, '/f', [0xff, 0xfe]), 'utf8')).toBe('inside');
    expect(readFileSync(raw(out, '/top', [0xe9]), 'utf8')).toBe('latin-1 name');
    expect(readFileSync(join(out, 'ok\uFFFD'), 'utf8')).toBe('replacement character');
    expect(readlinkSync(raw(out, '/link'), { encoding: 'buffer' })).toEqual(raw('target', [0xff]));
    // The hardlink is a link entry to the first name, in bytes too.
    expect(statSync(raw(out, '/hard')).ino).toBe(statSync(raw(outDir, '/f', [0xff, 0xfe])).ino);
    // The same tree gives the same tar.
    expect((await collect(directoryTar(d))).equals(tar)).toBe(true);
  });

  it('places the tree under a prefix and honours filter', async () => {
    const d = fixture();
    const tar = await collect(
      directoryTar(d, { prefix: '/opt/app/', filter: (p) => p !== 'b' && !p.endsWith('.txt') }),
    );
    const names = (await entries(tar)).map((e) => e.header.name);
    expect(names).toEqual([
      'opt/',
      'opt/app/',
      'opt/app/a/',
      'opt/app/a/pipe',
      'opt/app/' + 'x'.repeat(60) + '/',
      'opt/app/' + 'x'.repeat(60) + '/' + 'y'.repeat(80),
    ]);
  });

  it('emits whiteouts and opaque markers before their siblings', async () => {
    const d = fixture();
    const tar = await collect(
      directoryTar(d, { deletions: ['b/gone', 'b/also', 'top', 'nowhere/x'], opaque: ['a'] }),
    );
    const names = (await entries(tar)).map((e) => e.header.name);
    expect(names.slice(0, 5)).toEqual(['.wh.top', 'a/', 'a/.wh..wh..opq', 'a/pipe', 'a/small.txt']);
    expect(names.slice(5, 8)).toEqual(['b/', 'b/.wh.also', 'b/.wh.gone']);
    expect(names[names.length - 1]).toBe('nowhere/.wh.x');
    const t = await run('tar', ['-tf', '-'], tar);
    expect(t.code).toBe(0);
  });

  it('takes deletions and opaque paths from the layer root, prefix included or not', async () => {
    const d = fixture();
    const tar = await collect(
      directoryTar(d, {
        prefix: 'app',
        deletions: ['app/b/gone', '/app/old', 'etc/outside'],
        opaque: ['app/a'],
      }),
    );
    const names = (await entries(tar)).map((e) => e.header.name);
    expect(names.slice(0, 5)).toEqual([
      'app/',
      'app/.wh.old',
      'app/a/',
      'app/a/.wh..wh..opq',
      'app/a/pipe',
    ]);
    expect(names).toContain('app/b/.wh.gone');
    expect(names[names.length - 1]).toBe('etc/.wh.outside');
    expect(names.some((n) => n.startsWith('app/app/'))).toBe(false);
  });

  it('orders names by their UTF-8 bytes when UTF-16 order differs, and ASCII names by byte', async () => {
    const d = tmp();
    // U+1F600 is a surrogate pair (D83D …) in UTF-16 but F0 … in UTF-8, so
    // it sorts before U+FB01 (EF AC 81) by code unit and after it by byte.
    for (const n of ['b', 'a', 'B', '\u{1F600}', '\uFB01', 'a0']) writeFileSync(join(d, n), n);
    mkdirSync(join(d, 'z'));
    for (const n of ['y', 'Y', '_']) writeFileSync(join(d, 'z', n), n);
    const tar = await collect(directoryTar(d, { deletions: ['z/\u{1F600}', 'z/\uFB01', 'z/A'] }));
    const names = (await entries(tar)).map((e) => e.header.name);
    expect(names).toEqual([
      'B',
      'a',
      'a0',
      'b',
      'z/',
      'z/.wh.A',
      'z/.wh.\uFB01',
      'z/.wh.\u{1F600}',
      'z/Y',
      'z/_',
      'z/y',
      '\uFB01',
      '\u{1F600}',
    ]);
  });

  it('refuses deletions with .. components', () => {
    expect(() => directoryTar(tmp(), { deletions: ['../etc'] })).toThrow(
      expect.objectContaining({ code: 'UNSAFE_PATH' }),
    );
  });

  it('keeps owners when asked', async () => {
    const d = tmp();
    writeFileSync(join(d, 'f'), 'x');
    const tar = await collect(directoryTar(d, { owner: { uid: 1000, gid: 3000000 } }));
    // gid 3000000 does not fit ustar's octal field, so it travels in a PAX header.
    const es = await entries(tar);
    expect(es[0]!.header.uid).toBe(1000);
    expect(es[0]!.header.pax).toMatchObject({ gid: '3000000' });
    const t = await run('tar', ['--numeric-owner', '-tvf', '-'], tar);
    expect(t.stdout).toContain('1000/3000000');
    const kept = await entries(await collect(directoryTar(d, { owner: 'keep' })));
    expect(kept[0]!.header.uid).toBe(statSync(join(d, 'f')).uid);
  });
});

describe('a file that changes size while the walk reads it', () => {
  // The filter runs after a file's lstat and before its read: it changes
  // the file in between, as another process would.
  const cases = [
    ['small', 1000],
    ['large', 3 * 1024 * 1024 + 7],
  ] as const;
  it.each(cases)('fails the stream with IO when a %s file grew', async (_, size) => {
    const dir = tempDir('grow');
    writeFileSync(join(dir, 'a'), pseudoRandom(size, 1));
    writeFileSync(join(dir, 'f'), pseudoRandom(size, 2));
    const tar = directoryTar(dir, {
      filter: (path) => {
        if (path === 'f') appendFileSync(join(dir, 'f'), 'more');
        return true;
      },
    });
    await expect(collect(tar)).rejects.toMatchObject({
      code: 'IO',
      message: expect.stringMatching(/f grew past its \d+ bytes while being read/) as unknown,
    });
  });

  it.each(cases)('fails the stream with IO when a %s file shrank', async (_, size) => {
    const dir = tempDir('shrink');
    writeFileSync(join(dir, 'f'), pseudoRandom(size, 3));
    const tar = directoryTar(dir, {
      filter: () => {
        truncateSync(join(dir, 'f'), size - 10);
        return true;
      },
    });
    await expect(collect(tar)).rejects.toMatchObject({
      code: 'IO',
      message: expect.stringMatching(/f shrank from \d+ to \d+ bytes while being read/) as unknown,
    });
  });

  it('reads files whose end lands on a chunk boundary, and the next one whole', async () => {
    // A header and a file filling the rest of the first 1 MiB chunk: the
    // read that checks for more bytes has no room left in the chunk and
    // goes to the next one. The tar is `a`'s header and bytes, then `b`'s.
    const mib = 1024 * 1024;
    for (const size of [mib - 513, mib - 512, mib - 511, mib - 1024, mib - 1025]) {
      const dir = tempDir('edge');
      const a = pseudoRandom(size, size);
      const b = pseudoRandom(5000, 5);
      writeFileSync(join(dir, 'a'), a);
      writeFileSync(join(dir, 'b'), b);
      const tar = await collect(directoryTar(dir));
      expect(tar.subarray(512, 512 + size).equals(a)).toBe(true);
      const at = 512 + Math.ceil(size / 512) * 512;
      expect(tar.subarray(at, at + 2).toString()).toBe('b\0');
      expect(tar.subarray(at + 512, at + 512 + 5000).equals(b)).toBe(true);
    }
  });
});

describe('layerFromDirectory', () => {
  it('gives the same digest for the same tree built twice and after touching every file under SOURCE_DATE_EPOCH', async () => {
    const d = fixture();
    const saved = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = '1600000000';
    try {
      const one = layerFromDirectory(d);
      const two = layerFromDirectory(d);
      const d1 = await one.digest();
      expect(await two.digest()).toBe(d1);
      const later = new Date(Date.now() + 5000);
      const touch = (p: string) => {
        for (const n of readdirSync(p, { withFileTypes: true })) {
          const full = join(p, n.name);
          if (n.isSymbolicLink()) continue;
          if (n.isDirectory()) touch(full);
          utimesSync(full, later, later);
        }
      };
      touch(d);
      const three = layerFromDirectory(d);
      expect(await three.digest()).toBe(d1);
      expect(await three.diffId()).toBe(await one.diffId());
      const es = await entries(await collect(three.uncompressed()));
      for (const e of es) expect(e.header.mtime.getTime()).toBeLessThanOrEqual(1600000000 * 1000);
    } finally {
      if (saved === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = saved;
    }
  });

  it('matches a bytes layer over the same tar, memoizes, and fills knownDescriptor', async () => {
    const d = fixture();
    const layer = layerFromDirectory(d, { mtime: 0 });
    expect(layer.knownDescriptor()).toBeUndefined();
    const blob = await collect(layer.compressed());
    const tar = gunzipSync(blob);
    const bytes = layerFromBytes(tar);
    expect(await layer.digest()).toBe(await bytes.digest());
    expect(await layer.diffId()).toBe(await bytes.diffId());
    expect(await layer.size()).toBe(blob.length);
    expect(layer.knownDescriptor()).toEqual(bytes.knownDescriptor!());
    // Re-openable: a second read gives the same bytes.
    expect((await collect(layer.compressed())).equals(blob)).toBe(true);
    const g = await run('gzip', ['-t'], blob);
    expect(g.code).toBe(0);
  });

  it('gives the same blob for 1 and 4 workers and the default (every core), and both sides agree', async () => {
    // Several MiB of small and large files: the walk's pooled 1 MiB chunks
    // are handed to the gzip workers without a copy on the compressed side.
    const d = fixture();
    for (let i = 0; i < 300; i++) writeFileSync(join(d, `a/f${i}`), textish(3000 + i * 37));
    writeFileSync(join(d, 'b/sub/big2.bin'), textish(2 * 1024 * 1024 + 5));
    const tar = await collect(directoryTar(d, { mtime: 0 }));
    expect(tar.length).toBeGreaterThan(6 * 1024 * 1024);
    const blobs: Buffer[] = [];
    for (const o of [{ workers: 1 }, {}, { workers: 4 }]) {
      const layer = layerFromDirectory(d, { mtime: 0, ...o });
      const blob = await collect(layer.compressed());
      expect(gunzipSync(blob).equals(tar)).toBe(true);
      expect(await layer.size()).toBe(blob.length);
      blobs.push(blob);
      // The uncompressed side of a fresh layer: the same tar, the same digest.
      const again = layerFromDirectory(d, { mtime: 0, ...o });
      expect((await collect(again.uncompressed())).equals(tar)).toBe(true);
      expect(await again.digest()).toBe(await layer.digest());
    }
    expect(blobs[1]?.equals(blobs[0] ?? Buffer.alloc(0))).toBe(true);
    expect(blobs[2]?.equals(blobs[0] ?? Buffer.alloc(0))).toBe(true);
  });

  it('never hands a directoryTar chunk to a gzip worker: a second reader of the stream keeps its bytes', async () => {
    const d = fixture();
    writeFileSync(join(d, 'b/sub/big2.bin'), textish(3 * 1024 * 1024));
    const expected = await collect(directoryTar(d, { mtime: 0 }));
    const stream = directoryTar(d, { mtime: 0 });
    const seen: Buffer[] = [];
    stream.on('data', (c: Buffer) => seen.push(c));
    const layer = streamLayer(stream, { workers: 2 });
    await collect(layer.compressed());
    await layer.digest();
    expect(Buffer.concat(seen).equals(expected)).toBe(true);
  });
});
