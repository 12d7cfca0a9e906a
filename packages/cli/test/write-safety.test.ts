import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lading } from './helpers.js';

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-write-safety-'));
  for (const name of ['a', 'b', 'c']) {
    await mkdir(join(work, name));
    await writeFile(join(work, name, `${name}.txt`), `${name}\n`);
  }
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function digest(location: string): Promise<string> {
  const r = await lading('digest', location);
  expect(r.stderr).toBe('');
  return r.stdout.trim();
}

describe('writing into a docker archive that holds other images', () => {
  it('keeps them: build adds an image, mutate in place and a rebuild replace only theirs', async () => {
    const file = join(work, 'multi.tar');
    const at = (tag: string) => `docker-archive:${file}:${tag}`;
    expect((await lading('build', join(work, 'a'), at('t/app:1'), '-q')).code).toBe(0);
    const app = await digest(at('t/app:1'));
    expect((await lading('build', join(work, 'b'), at('t/other:2'), '-q')).code).toBe(0);
    const other = await digest(at('t/other:2'));
    expect((await lading('ls', `docker-archive:${file}`)).stdout.split('\n').sort()).toEqual([
      '',
      't/app:1',
      't/other:2',
    ]);
    expect(await digest(at('t/app:1'))).toBe(app);

    const mutated = await lading('mutate', at('t/app:1'), '--env', 'A=1', '-q');
    expect(mutated.stderr).toBe('');
    expect(mutated.code).toBe(0);
    expect(await digest(at('t/app:1'))).not.toBe(app);
    expect(await digest(at('t/other:2'))).toBe(other);

    // The same tag again: that image is replaced, not added beside.
    expect((await lading('build', join(work, 'c'), at('t/other:2'), '-q')).code).toBe(0);
    expect(await digest(at('t/other:2'))).not.toBe(other);
    expect((await lading('ls', `docker-archive:${file}`)).stdout.split('\n').sort()).toEqual([
      '',
      't/app:1',
      't/other:2',
    ]);
    // and skopeo reads both out of it
    const skopeo = promisify(execFile);
    for (const tag of ['t/app:1', 't/other:2']) {
      const { stdout } = await skopeo('skopeo', ['inspect', '--raw', at(tag)]);
      expect(JSON.parse(stdout)).toHaveProperty('layers');
    }
  });

  it('replaces a file that is not an archive, as before', async () => {
    const file = join(work, 'not-an-archive.tar');
    await writeFile(file, 'just text');
    expect((await lading('build', join(work, 'a'), `docker-archive:${file}:x:1`, '-q')).code).toBe(
      0,
    );
    expect((await lading('ls', `docker-archive:${file}`)).stdout).toBe('x:1\n');
  });
});
