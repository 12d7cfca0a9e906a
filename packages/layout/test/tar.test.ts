import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createReadStream, createWriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { isLadingError } from '@lading/core';
import { tarPadding, tarTrailer } from '@lading/core/internal';
import { indexTar, resolveEntry, tarHeader } from '../src/internal/tar.js';
import { tarNames, tempDir } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function read(file: string, start: number, size: number): Promise<string> {
  if (size === 0) return '';
  const chunks: Buffer[] = [];
  for await (const c of createReadStream(file, { start, end: start + size - 1 })) {
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

describe('indexTar', () => {
  it('locates entries with PAX long names, links and directories written by tar-stream', async () => {
    const t = await tempDir();
    cleanups.push(t.cleanup);
    const file = join(t.dir, 'a.tar');
    const long = `${'d'.repeat(120)}/${'f'.repeat(130)}.txt`;
    const pack = tar.pack();
    pack.entry({ name: 'dir/', type: 'directory' });
    pack.entry({ name: './dir/short.txt' }, 'short');
    pack.entry({ name: long }, 'long content');
    pack.entry({ name: 'dir/link', type: 'symlink', linkname: '../' + long });
    pack.entry({ name: 'hard', type: 'link', linkname: 'dir/short.txt' });
    pack.entry({ name: 'empty' }, '');
    pack.finalize();
    await pipeline(pack, createWriteStream(file));
    const entries = await indexTar(file);
    expect([...entries.keys()].sort()).toEqual(
      ['dir', 'dir/link', 'dir/short.txt', 'empty', 'hard', long].sort(),
    );
    const s = resolveEntry(entries, 'dir/short.txt')!;
    expect(await read(file, s.offset, s.size)).toBe('short');
    const l = resolveEntry(entries, 'dir/link')!;
    expect(l.name).toBe(long);
    expect(await read(file, l.offset, l.size)).toBe('long content');
    expect(resolveEntry(entries, 'hard')?.name).toBe('dir/short.txt');
    expect(resolveEntry(entries, 'empty')?.size).toBe(0);
    expect(resolveEntry(entries, 'missing')).toBeUndefined();
  });

  it('writes headers tar-stream reads back', async () => {
    const t = await tempDir();
    cleanups.push(t.cleanup);
    const file = join(t.dir, 'b.tar');
    const body = Buffer.from('x'.repeat(700));
    await writeFile(
      file,
      Buffer.concat([
        tarHeader('d/', 0, 'directory'),
        tarHeader('d/f', body.length),
        body,
        Buffer.alloc(tarPadding(body.length)),
        tarTrailer,
      ]),
    );
    const seen: [string, string, number][] = [];
    const extract = tar.extract();
    const done = (async () => {
      for await (const e of extract) {
        let n = 0;
        for await (const c of e) n += (c as Buffer).length;
        seen.push([e.header.name, e.header.type, n]);
      }
    })();
    await pipeline(createReadStream(file), extract);
    await done;
    expect(seen).toEqual([
      ['d/', 'directory', 0],
      ['d/f', 'file', 700],
    ]);
  });

  it('writes a name over 100 bytes as PAX when indexTar and tar-stream read it back', async () => {
    const t = await tempDir();
    cleanups.push(t.cleanup);
    const file = join(t.dir, 'long.tar');
    const long = `${'n'.repeat(90)}/${'m'.repeat(90)}/layer.tar`;
    const body = Buffer.from('long-named body');
    await writeFile(
      file,
      Buffer.concat([
        tarHeader(long, body.length),
        body,
        Buffer.alloc(tarPadding(body.length)),
        tarHeader('blobs/sha256/x', 0, 'hardlink', long),
        tarTrailer,
      ]),
    );
    const entries = await indexTar(file);
    const e = resolveEntry(entries, 'blobs/sha256/x')!;
    expect(e.name).toBe(long);
    expect(await read(file, e.offset, e.size)).toBe('long-named body');
    expect(await tarNames(file)).toEqual([long, 'blobs/sha256/x']);
  });

  it('rejects a corrupt header with INVALID_ARGUMENT', async () => {
    const t = await tempDir();
    cleanups.push(t.cleanup);
    const file = join(t.dir, 'c.tar');
    const h = tarHeader('x', 0);
    h[0] = 0x79; // breaks the checksum
    await writeFile(file, Buffer.concat([h, tarTrailer]));
    await expect(indexTar(file)).rejects.toSatisfy((e: unknown) =>
      isLadingError(e, 'INVALID_ARGUMENT'),
    );
  });

  /** setField overwrites a header field and recomputes the checksum. */
  function setField(h: Buffer, offset: number, bytes: Buffer): Buffer {
    bytes.copy(h, offset);
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
    return h;
  }

  it.each([
    ['a negative size', Buffer.from('-0000001000\0')],
    ['a size that is not octal', Buffer.from('0000001z\0')],
    [
      'a negative base-256 size',
      Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]),
    ],
  ])('rejects a header with %s with INVALID_ARGUMENT instead of looping', async (_, field) => {
    const t = await tempDir();
    cleanups.push(t.cleanup);
    const file = join(t.dir, 'size.tar');
    const body = Buffer.alloc(1024, 1);
    const h = setField(tarHeader('x', 0), 124, field);
    await writeFile(file, Buffer.concat([tarHeader('a', body.length), body, h, tarTrailer]));
    await expect(indexTar(file)).rejects.toSatisfy((e: unknown) =>
      isLadingError(e, 'INVALID_ARGUMENT'),
    );
  });

  it('rejects a header whose checksum field is not a number', async () => {
    const t = await tempDir();
    cleanups.push(t.cleanup);
    const file = join(t.dir, 'sum.tar');
    const h = tarHeader('x', 0);
    h.write('garbage\0', 148, 'ascii');
    await writeFile(file, Buffer.concat([h, tarTrailer]));
    await expect(indexTar(file)).rejects.toSatisfy((e: unknown) =>
      isLadingError(e, 'INVALID_ARGUMENT'),
    );
  });

  it.each(['-1024', 'abc', '99999999999'])(
    'rejects a PAX size of %s with INVALID_ARGUMENT',
    async (size) => {
      const t = await tempDir();
      cleanups.push(t.cleanup);
      const file = join(t.dir, 'pax.tar');
      const rec = ` size=${size}\n`;
      const len = rec.length + String(rec.length + 2).length;
      const record = Buffer.from(`${String(len)}${rec}`);
      const pax = setField(tarHeader('PaxHeader/x', record.length), 156, Buffer.from('x'));
      await writeFile(
        file,
        Buffer.concat([
          pax,
          record,
          Buffer.alloc(tarPadding(record.length)),
          tarHeader('x', 0),
          tarTrailer,
        ]),
      );
      await expect(indexTar(file)).rejects.toSatisfy((e: unknown) =>
        isLadingError(e, 'INVALID_ARGUMENT'),
      );
    },
  );

  it('finds every entry tar-stream wrote, whatever the names and sizes (property)', async () => {
    const t = await tempDir();
    cleanups.push(t.cleanup);
    const segment = fc.stringMatching(/^[a-z0-9._-]{1,60}$/).filter((x) => x !== '.' && x !== '..');
    const entry = fc.record({
      path: fc.array(segment, { minLength: 1, maxLength: 4 }).map((p) => p.join('/')),
      size: fc.integer({ min: 0, max: 3000 }),
      seed: fc.integer({ min: 0, max: 255 }),
    });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(entry, { selector: (e) => e.path, maxLength: 8 }),
        async (entries) => {
          // a file may not also be a directory prefix of another entry
          const files = entries.filter(
            (e) => !entries.some((o) => o.path.startsWith(`${e.path}/`)),
          );
          const file = join(t.dir, `p${run++}.tar`);
          const pack = tar.pack();
          for (const e of files) pack.entry({ name: e.path }, Buffer.alloc(e.size, e.seed));
          pack.finalize();
          await pipeline(pack, createWriteStream(file));
          const index = await indexTar(file);
          expect(index.size).toBe(files.length);
          for (const e of files) {
            const found = index.get(e.path)!;
            expect(found.size).toBe(e.size);
            expect(await read(file, found.offset, found.size)).toBe(
              Buffer.alloc(e.size, e.seed).toString('utf8'),
            );
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});
