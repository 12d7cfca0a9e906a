import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeDirectory } from '@lading/core/internal';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-mkdir-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('makeDirectory', () => {
  it('creates missing parents and returns the first one it made when several are missing', async () => {
    const deep = join(work, 'a', 'b', 'c');
    expect(await makeDirectory(deep, 0o750)).toBe(join(work, 'a'));
    expect((await stat(deep)).isDirectory()).toBe(true);
    // The mode applies to every level it creates (the umask may clear more bits).
    expect((await stat(join(work, 'a', 'b'))).mode & 0o027).toBe(0);
  });

  it('returns undefined when the directory already exists', async () => {
    expect(await makeDirectory(work)).toBeUndefined();
  });

  it('rejects with ENOTDIR or EEXIST when a file is in the way', async () => {
    const file = join(work, 'file');
    await writeFile(file, 'x');
    await expect(makeDirectory(file)).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(makeDirectory(join(file, 'below'))).rejects.toMatchObject({ code: 'ENOTDIR' });
  });

  it('rejects with ENOENT instead of looping when the parent refuses new entries (/proc)', async () => {
    await expect(makeDirectory('/proc/lading-x/blobs/sha256')).rejects.toMatchObject({
      code: 'ENOENT',
      path: '/proc/lading-x',
    });
  });
});
