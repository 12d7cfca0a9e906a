import { execFileSync } from 'node:child_process';
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { extract, type Header } from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { layerFromBytes, type Layer } from '@lading/core';
import { encodeTarHeader, tarTrailer } from '@lading/core/internal';
import { flatten } from '../src/index.js';
import { collect, encodedTar, makeTar, tempDir, type TarEntry } from './helpers.js';

async function layer(entries: TarEntry[]): Promise<Layer> {
  return layerFromBytes(await makeTar(entries), { compressed: false });
}

/** listing reads a tar into name → type:content. */
async function listing(tar: Readable): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const x = extract();
  Readable.from([await collect(tar)]).pipe(x);
  for await (const e of x) {
    const body = await collect(e as unknown as Readable);
    out[e.header.name] = `${e.header.type}:${body.toString()}`;
  }
  return out;
}

describe('flatten', () => {
  it('applies whiteouts, opaque directories and replacements when layers are stacked', async () => {
    const lower = await layer([
      { name: 'a', type: 'directory' },
      { name: 'a/x', body: 'gone' },
      { name: 'a/y', body: 'stays' },
      { name: 'b', type: 'directory' },
      { name: 'b/z', body: 'hidden by opaque' },
      { name: 'b/deep', type: 'directory' },
      { name: 'b/deep/q', body: 'hidden too' },
      { name: 'keep', body: 'old' },
      { name: 'dir-then-file', type: 'directory' },
      { name: 'dir-then-file/inner', body: 'shadowed' },
    ]);
    const upper = await layer([
      { name: 'a/.wh.x' },
      { name: 'b', type: 'directory' },
      { name: 'b/.wh..wh..opq' },
      { name: 'b/new', body: 'fresh' },
      { name: './keep', body: 'new' },
      { name: 'dir-then-file', body: 'now a file' },
    ]);
    const top = await layer([{ name: 'c', body: 'top' }, { name: '.wh.a' }]);
    expect(await listing(flatten([lower, upper]))).toEqual({
      'a/': 'directory:',
      'a/y': 'file:stays',
      'b/': 'directory:',
      'b/new': 'file:fresh',
      keep: 'file:new',
      'dir-then-file': 'file:now a file',
    });
    const all = await listing(flatten([lower, upper, top]));
    expect(Object.keys(all).sort()).toEqual(['b/', 'b/new', 'c', 'dir-then-file', 'keep']);
  });

  it('fails the stream with ABORTED when the signal fires', async () => {
    const l = await layer([{ name: 'f', body: 'x' }]);
    const controller = new AbortController();
    controller.abort();
    await expect(collect(flatten([l], { signal: controller.signal }))).rejects.toMatchObject({
      code: 'ABORTED',
    });
  });

  it('keeps owner ids and names, extended attributes and times from the PAX records', async () => {
    const tar = encodedTar({
      header: {
        name: 'bin/ping',
        mode: 0o755,
        gid: 3_000_000,
        mtime: 1_700_000_000,
        uname: 'root',
        gname: 'g'.repeat(40),
        pax: { 'SCHILY.xattr.user.note': 'kept', mtime: '1700000000.25' },
      },
      body: 'ping',
    });
    const headers: Header[] = [];
    const x = extract();
    Readable.from([await collect(flatten([layerFromBytes(tar, { compressed: false })]))]).pipe(x);
    for await (const e of x) {
      headers.push(e.header);
      e.resume();
    }
    expect(headers).toHaveLength(1);
    expect(headers[0]).toMatchObject({ name: 'bin/ping', uname: 'root', size: 4 });
    // An id or owner name too large for ustar comes back in PAX records.
    expect(headers[0]?.pax).toMatchObject({
      'SCHILY.xattr.user.note': 'kept',
      mtime: '1700000000.25',
      gid: '3000000',
      gname: 'g'.repeat(40),
    });
  });

  it('copies a binary extended attribute byte for byte, for the entry that holds it', async () => {
    // Two capability sets that decode as UTF-8 to the same text: each file keeps its own.
    const caps = [0xff, 0xfe].map((b) => Buffer.from([1, 0, 0, 2, b, 0x20, 0, 0, 0, 0, 0, 0]));
    const file = (name: string, cap: Buffer): Buffer =>
      encodeTarHeader({
        name,
        type: 'file',
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        pax: { 'SCHILY.xattr.security.capability': cap },
      });
    // The lower layer's hidden entry comes first: its record must not go to the next entry.
    const lower = Buffer.concat([
      file('hidden', caps[0] ?? Buffer.alloc(0)),
      file('shown', caps[1] ?? Buffer.alloc(0)),
      tarTrailer,
    ]);
    const upper = Buffer.concat([
      file('hidden', caps[1] ?? Buffer.alloc(0)),
      file('other', caps[0] ?? Buffer.alloc(0)),
      tarTrailer,
    ]);
    const flat = await collect(
      flatten([
        layerFromBytes(lower, { compressed: false }),
        layerFromBytes(upper, { compressed: false }),
      ]),
    );
    const record = (cap: Buffer): Buffer =>
      Buffer.concat([Buffer.from(' SCHILY.xattr.security.capability='), cap, Buffer.from('\n')]);
    // Upper first: hidden (0xfe), other (0xff), then the lower layer's shown (0xfe).
    const at = (cap: Buffer, from = 0): number => flat.indexOf(record(cap), from);
    const fe = caps[1] ?? Buffer.alloc(0);
    const ff = caps[0] ?? Buffer.alloc(0);
    expect(at(fe)).toBeGreaterThan(0);
    expect(at(ff)).toBeGreaterThan(at(fe));
    expect(at(fe, at(ff))).toBeGreaterThan(at(ff));
    expect(flat.includes('\uFFFD')).toBe(false);
  });

  it('refuses an entry type it cannot write (a GNU sparse file) with UNSUPPORTED', async () => {
    const dir = tempDir('lading-flat-');
    const file = join(dir, 'holes');
    writeFileSync(file, 'data');
    truncateSync(file, 1024 * 1024);
    const tar = execFileSync('tar', ['--format=gnu', '-S', '-cf', '-', '-C', dir, 'holes']);
    await expect(
      collect(flatten([layerFromBytes(tar, { compressed: false })])),
    ).rejects.toMatchObject({ code: 'UNSUPPORTED' });
  });
});
