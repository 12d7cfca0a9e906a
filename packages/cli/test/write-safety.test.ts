import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { freePort } from '@lading/testing';
import { lading } from './helpers.js';

let work: string;
let registry: Registry;
let host: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-write-safety-'));
  registry = createRegistry({ storage: memoryStorage() });
  host = new URL((await registry.listen({ host: '127.0.0.1', port: 0 })).url).host;
  for (const name of ['a', 'b', 'c']) {
    await mkdir(join(work, name));
    await writeFile(join(work, name, `${name}.txt`), `${name}\n`);
  }
});

afterAll(async () => {
  await registry.close();
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

  it('does not keep an untagged copy of the image it writes (an archive skopeo made)', async () => {
    const layout = join(work, 'sk-layout');
    const file = join(work, 'sk.tar');
    expect((await lading('build', join(work, 'a'), `oci:${layout}:1`, '-q')).code).toBe(0);
    const skopeo = promisify(execFile);
    await skopeo('skopeo', ['copy', '-q', `oci:${layout}:1`, `docker-archive:${file}`]);
    expect((await lading('cp', `oci:${layout}:1`, `docker-archive:${file}:c:1`)).code).toBe(0);
    const { stdout } = await skopeo('tar', ['-xOf', file, 'manifest.json']);
    const entries = JSON.parse(stdout) as { RepoTags: string[] | null }[];
    expect(entries.map((e) => e.RepoTags)).toEqual([['c:1']]);
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

describe('several destinations', () => {
  it('writes none when one of them cannot take the image', async () => {
    expect((await lading('build', join(work, 'a'), `${host}/t/app:1`, '-q')).code).toBe(0);
    const file = join(work, 'a-file');
    await writeFile(file, 'not a layout');
    const closed = `127.0.0.1:${String(await freePort())}`;
    const cases: { argv: string[]; code: number; absent: string }[] = [
      {
        argv: [
          'mutate',
          `${host}/t/app:1`,
          '-t',
          `${host}/t/app:mv1`,
          '-t',
          `docker-archive:${join(work, 'no/such/dir/x.tar')}:a/b:1`,
          '--env',
          'MOVED=1',
        ],
        code: 1,
        absent: `${host}/t/app:mv1`,
      },
      {
        argv: [
          'build',
          join(work, 'b'),
          '-t',
          `${host}/t/b:1`,
          '-t',
          `${closed}/t/b:1`,
          '--insecure',
        ],
        code: 5,
        absent: `${host}/t/b:1`,
      },
      {
        argv: ['build', join(work, 'c'), '-t', `${host}/t/c:1`, '-t', `oci:${file}:c`],
        code: 1,
        absent: `${host}/t/c:1`,
      },
    ];
    for (const c of cases) {
      const r = await lading(...c.argv, '-q');
      expect(r.code, c.argv.join(' ')).toBe(c.code);
      expect(r.stderr.split('\n').filter(Boolean).length).toBeLessThanOrEqual(2);
      expect((await lading('digest', c.absent)).code, c.absent).toBe(4);
    }
    expect(await readFile(file, 'utf8')).toBe('not a layout');
  });

  it('refuses a destination named by digest before anything is built or sent', async () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    for (const dst of [`${host}/t/d@${digest}`, `oci:${join(work, 'dl')}@${digest}`]) {
      const r = await lading('build', join(work, 'a'), dst);
      expect(r.code, dst).toBe(2);
      expect(r.stderr).toContain('names a digest: a new image is written under a tag');
    }
    expect((await lading('ls', `${host}/t/d`)).code).toBe(4);
  });
});
