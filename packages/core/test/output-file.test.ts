import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isLadingError } from '../src/index.js';
import { checkOutputFile, writeOutputFile } from '../src/internal-api.js';

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'lading-output-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const bytes = (text: string) => Readable.from([Buffer.from(text)]);

describe('writeOutputFile', () => {
  it('replaces a regular file whole and keeps its permission bits', async () => {
    const file = join(dir, 'plain.tar');
    await fs.writeFile(file, 'old contents, longer than the new');
    await fs.chmod(file, 0o600);
    await writeOutputFile(file, bytes('new'));
    expect(await fs.readFile(file, 'utf8')).toBe('new');
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    expect((await fs.readdir(dir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('gives a new file newMode, and an existing one keeps its own', async () => {
    const file = join(dir, 'secret.json');
    await writeOutputFile(file, bytes('{}'), undefined, 0o600);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    await fs.chmod(file, 0o640);
    await writeOutputFile(file, bytes('{"a":1}'), undefined, 0o600);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o640);
    expect(await fs.readFile(file, 'utf8')).toBe('{"a":1}');
  });

  it('leaves the old file as it was when the content fails', async () => {
    const file = join(dir, 'kept.tar');
    await fs.writeFile(file, 'old');
    const failing = new Readable({
      read() {
        this.push('partial');
        this.destroy(new Error('the source broke'));
      },
    });
    await expect(writeOutputFile(file, failing)).rejects.toThrow('the source broke');
    expect(await fs.readFile(file, 'utf8')).toBe('old');
    expect((await fs.readdir(dir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('follows a symlink and replaces its target, keeping the link', async () => {
    const target = join(dir, 'real.tar');
    const link = join(dir, 'link.tar');
    await fs.writeFile(target, 'old');
    await fs.symlink('real.tar', link);
    await writeOutputFile(link, bytes('through the link'));
    expect((await fs.lstat(link)).isSymbolicLink()).toBe(true);
    expect(await fs.readlink(link)).toBe('real.tar');
    expect(await fs.readFile(target, 'utf8')).toBe('through the link');
    // A dangling link names the file to create.
    const dangling = join(dir, 'dangling.tar');
    await fs.symlink('created.tar', dangling);
    await writeOutputFile(dangling, bytes('created'));
    expect(await fs.readFile(join(dir, 'created.tar'), 'utf8')).toBe('created');
    expect((await fs.lstat(dangling)).isSymbolicLink()).toBe(true);
  });

  it('writes through a FIFO instead of replacing it with a file', async () => {
    const fifo = join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    const read = (async () => {
      const chunks: Buffer[] = [];
      for await (const c of createReadStream(fifo)) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString();
    })();
    await writeOutputFile(fifo, bytes('into the pipe'));
    expect(await read).toBe('into the pipe');
    expect((await fs.lstat(fifo)).isFIFO()).toBe(true);
  });

  it('refuses a directory, naming it', async () => {
    const sub = join(dir, 'adir');
    await fs.mkdir(sub);
    const err = await writeOutputFile(sub, bytes('x')).catch((e: unknown) => e);
    expect(isLadingError(err)).toBe(true);
    expect((err as Error).message).toContain(sub);
    expect((err as Error).message).not.toContain('.tmp');
    expect((await fs.lstat(sub)).isDirectory()).toBe(true);
  });

  it('names the file, not its temp file, when the directory is missing', async () => {
    const file = join(dir, 'no', 'such', 'dir.tar');
    let read = false;
    const content = new Readable({
      read() {
        read = true;
        this.push(null);
      },
    });
    const err = await writeOutputFile(file, content).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'IO',
      path: file,
      message: `cannot write ${file}: no directory ${join(dir, 'no', 'such')}`,
    });
    // checked before the content is read: nothing is spent on it
    expect(read).toBe(false);
    await fs.writeFile(join(dir, 'afile'), '');
    await expect(checkOutputFile(join(dir, 'afile', 'x.tar'))).rejects.toMatchObject({
      code: 'IO',
    });
    expect((await checkOutputFile(join(dir, 'fresh.tar'))).st).toBeUndefined();
  });
});
