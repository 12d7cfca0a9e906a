// A set of hostile tarballs made at test time outside the repository — by
// GNU tar (gnu, posix and ustar formats, -P names, --transform) and by
// tar-stream — each extracted into a fresh root next to a canary directory.
// Every tarball must either land inside the root or fail with a typed error
// (UNSAFE_PATH for escapes), and the canary and the root's surroundings must
// come out unchanged. LADING_HOSTILE_TARS=<dir> adds the tarballs of that
// directory to the set (expected: inside, or any typed error).
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import {
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  writeFileSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { isLadingError } from '@lading/core';
import { extract, layerFromFile } from '../src/index.js';
import { makeTar, tempDir } from './helpers.js';

type Expect = 'refused' | 'inside' | 'invalid' | 'typed';

interface Case {
  readonly name: string;
  readonly expect: Expect;
  /** build writes the tarball to `path`; `outside` is the canary directory. */
  readonly build: (path: string, outside: string, stage: string) => Promise<void> | void;
}

/** gnuTar runs GNU tar in `stage` on the file `x` (body "pwn"), renamed by `transform`. */
function gnuTar(format: string, transform: string, extra: string[] = []) {
  return (path: string, _outside: string, stage: string): void => {
    writeFileSync(join(stage, 'x'), 'pwn');
    execFileSync('tar', [
      `--format=${format}`,
      '-P',
      '-cf',
      path,
      '-C',
      stage,
      `--transform=${transform}`,
      ...extra,
      'x',
    ]);
  };
}

function viaTarStream(entries: (outside: string) => Parameters<typeof makeTar>[0]) {
  return async (path: string, outside: string): Promise<void> => {
    writeFileSync(path, await makeTar(entries(outside)));
  };
}

const long = 'd'.repeat(120);

const cases: Case[] = [
  { name: 'gnu: ../ name', expect: 'refused', build: gnuTar('gnu', 's,^x,../outside/x,') },
  {
    name: 'gnu: long name (././@LongLink) with ..',
    expect: 'refused',
    build: gnuTar('gnu', `s,^x,${long}/../../outside/x,`),
  },
  {
    name: 'posix: pax path with ..',
    expect: 'refused',
    build: gnuTar('posix', `s,^x,${long}/../../outside/x,`),
  },
  { name: 'ustar: a/../../ name', expect: 'refused', build: gnuTar('ustar', 's,^x,a/../../x,') },
  {
    name: 'gnu: absolute name into the canary',
    expect: 'refused',
    build: (path, outside, stage) => {
      gnuTar('gnu', `s,^x,${outside}/x,`)(path, outside, stage);
    },
  },
  {
    name: 'symlink to an absolute dir, then a file through it',
    expect: 'refused',
    build: viaTarStream((outside) => [
      { name: 'evil', type: 'symlink', linkname: outside },
      { name: 'evil/x', body: 'pwn' },
    ]),
  },
  {
    name: 'symlink ../, then a file through it',
    expect: 'refused',
    build: viaTarStream(() => [
      { name: 'up', type: 'symlink', linkname: '../outside' },
      { name: 'up/x', body: 'pwn' },
    ]),
  },
  {
    name: 'symlink chain climbing out',
    expect: 'refused',
    build: viaTarStream(() => [
      { name: 'a/', type: 'directory' },
      { name: 'a/b', type: 'symlink', linkname: '../..' },
      { name: 'c', type: 'symlink', linkname: 'a/b' },
      { name: 'c/outside/x', body: 'pwn' },
    ]),
  },
  {
    name: 'symlink loop',
    expect: 'refused',
    build: viaTarStream(() => [
      { name: 'l1', type: 'symlink', linkname: 'l2' },
      { name: 'l2', type: 'symlink', linkname: 'l1' },
      { name: 'l1/x', body: 'pwn' },
    ]),
  },
  {
    name: 'hardlink ../outside/secret',
    expect: 'refused',
    build: viaTarStream(() => [{ name: 'h', type: 'link', linkname: '../outside/secret' }]),
  },
  {
    name: 'hardlink to an absolute path',
    expect: 'refused',
    build: viaTarStream((outside) => [{ name: 'h', type: 'link', linkname: `${outside}/secret` }]),
  },
  {
    name: 'hardlink through an escaping symlink',
    expect: 'refused',
    build: viaTarStream((outside) => [
      { name: 's', type: 'symlink', linkname: outside },
      { name: 'h', type: 'link', linkname: 's/secret' },
    ]),
  },
  {
    name: 'whiteout through an escaping symlink',
    expect: 'refused',
    build: viaTarStream(() => [
      { name: 'up', type: 'symlink', linkname: '../outside' },
      { name: 'up/.wh.secret', body: '' },
    ]),
  },
  {
    name: 'opaque marker through an escaping symlink',
    expect: 'refused',
    build: viaTarStream(() => [
      { name: 'up', type: 'symlink', linkname: '../outside' },
      { name: 'up/.wh..wh..opq', body: '' },
    ]),
  },
  {
    name: 'file over a symlink to the canary (replaced, not followed)',
    expect: 'inside',
    build: viaTarStream((outside) => [
      { name: 'f', type: 'symlink', linkname: `${outside}/secret` },
      { name: 'f', body: 'pwn' },
    ]),
  },
  {
    name: 'directory over a symlink to the canary',
    expect: 'inside',
    build: viaTarStream((outside) => [
      { name: 'd', type: 'symlink', linkname: outside },
      { name: 'd/', type: 'directory', mode: 0o777 },
      { name: 'd/x', body: 'pwn' },
    ]),
  },
  {
    name: 'hardlink to a symlink that points out (links the link)',
    expect: 'inside',
    build: viaTarStream((outside) => [
      { name: 's', type: 'symlink', linkname: `${outside}/secret` },
      { name: 'h', type: 'link', linkname: 's' },
    ]),
  },
  {
    name: 'truncated in the middle of a file',
    expect: 'invalid',
    build: async (path) => {
      const tar = await makeTar([{ name: 'big', body: Buffer.alloc(100_000, 7) }]);
      writeFileSync(path, tar.subarray(0, 20_000));
    },
  },
  {
    name: 'corrupt gzip',
    expect: 'invalid',
    build: async (path) => {
      const gz = gzipSync(await makeTar([{ name: 'a', body: randomBytes(50_000) }]));
      gz.fill(0x55, 40, 200);
      writeFileSync(path, gz);
    },
  },
];

/** snapshot lists a tree with modes, link targets and file contents. */
function snapshot(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const n of readdirSync(join(dir, rel)).sort()) {
    const r = rel === '' ? n : `${rel}/${n}`;
    const abs = join(dir, r);
    const st = lstatSync(abs);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) out.push(`${r} -> ${readlinkSync(abs)}`);
    else if (st.isDirectory()) out.push(`${r}/ ${mode}`, ...snapshot(dir, r));
    else out.push(`${r} ${mode} ${st.nlink} ${readFileSync(abs).toString('base64')}`);
  }
  return out;
}

async function check(tarPath: string, expected: Expect, top: string): Promise<void> {
  const root = join(top, 'root');
  const outside = join(top, 'outside');
  const before = { outside: snapshot(outside), top: readdirSync(top).sort() };
  let caught: unknown;
  try {
    await extract([layerFromFile(tarPath)], root);
  } catch (e) {
    caught = e;
  }
  if (expected === 'inside') expect(caught).toBeUndefined();
  else if (expected === 'refused') expect(isLadingError(caught, 'UNSAFE_PATH')).toBe(true);
  else if (expected === 'invalid') expect(isLadingError(caught, 'INVALID_LAYER')).toBe(true);
  else if (caught !== undefined) expect(isLadingError(caught)).toBe(true);
  expect(snapshot(outside)).toEqual(before.outside);
  expect(readdirSync(top).sort()).toEqual(before.top);
}

function sandbox(): { top: string; outside: string; stage: string } {
  const top = tempDir('lading-hostile-');
  const outside = join(top, 'outside');
  mkdirSync(join(top, 'root'));
  mkdirSync(join(outside, 'sub'), { recursive: true });
  writeFileSync(join(outside, 'secret'), 'keep me');
  // A separate place for the tarballs and their sources.
  const stage = tempDir('lading-hostile-stage-');
  return { top, outside, stage };
}

describe('extract against a set of hostile tarballs', () => {
  for (const c of cases) {
    for (const gz of c.name === 'corrupt gzip' ? [false] : [false, true]) {
      it(`${c.name}${gz ? ' (gzipped)' : ''}: ${c.expect}`, async () => {
        const { top, outside, stage } = sandbox();
        const path = join(stage, 'layer.tar');
        await c.build(path, outside, stage);
        if (gz) writeFileSync(path, gzipSync(readFileSync(path)));
        await check(path, c.expect, top);
      });
    }
  }

  const external = process.env.LADING_HOSTILE_TARS;
  if (external !== undefined) {
    for (const n of readdirSync(external).sort()) {
      it(`external: ${n}: inside or a typed error`, async () => {
        const { top } = sandbox();
        await check(join(external, n), 'typed', top);
      });
    }
  }
});
