import { afterEach, describe, expect, it } from 'vitest';
import { mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  MediaType,
  digestAlgorithm,
  digestHex,
  digestOf,
  isLadingError,
  type Descriptor,
} from '@lading/core';
import { ociLayout } from '../src/index.js';
import { run, tempDir } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function layoutWithBlob(): Promise<{ dir: string; outside: string; desc: Descriptor }> {
  const t = await tempDir();
  cleanups.push(t.cleanup);
  const dir = join(t.dir, 'layout');
  const bytes = Buffer.from('secret bytes that live outside the layout\n');
  const desc: Descriptor = {
    mediaType: MediaType.OciLayerGzip,
    digest: digestOf(bytes),
    size: bytes.length,
  };
  const layout = ociLayout(dir);
  await layout.init();
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const outside = join(t.dir, 'outside');
  await writeFile(outside, bytes);
  return { dir, outside, desc };
}

function blobPath(dir: string, desc: Descriptor): string {
  return join(dir, 'blobs', digestAlgorithm(desc.digest), digestHex(desc.digest));
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => new Error('expected a rejection'),
    (err: unknown) => err,
  );
}

describe('ociLayout blob reads', () => {
  it('refuses with UNSAFE_PATH a blob that is a symlink out of the layout', async () => {
    const { dir, outside, desc } = await layoutWithBlob();
    await symlink(outside, blobPath(dir, desc));
    const layout = ociLayout(dir);
    expect(isLadingError(await rejection(layout.fetch(desc)), 'UNSAFE_PATH')).toBe(true);
    expect(isLadingError(await rejection(layout.readBlob(desc.digest)), 'UNSAFE_PATH')).toBe(true);
    expect(isLadingError(await rejection(layout.resolve(desc.digest)), 'UNSAFE_PATH')).toBe(true);
    expect(await layout.exists(desc)).toBe(false);
    expect(await layout.blobExists(desc.digest)).toBe(false);
  });

  it('refuses with UNSAFE_PATH when blobs/sha256 is a symlink to another directory', async () => {
    const { dir, outside, desc } = await layoutWithBlob();
    const elsewhere = join(dir, '..', 'elsewhere');
    await mkdir(elsewhere);
    await rename(outside, join(elsewhere, digestHex(desc.digest)));
    await rm(join(dir, 'blobs', 'sha256'), { recursive: true });
    await symlink(elsewhere, join(dir, 'blobs', 'sha256'));
    const err = await rejection(ociLayout(dir).fetch(desc));
    expect(isLadingError(err, 'UNSAFE_PATH')).toBe(true);
  });

  it('refuses a FIFO blob with UNSAFE_PATH instead of blocking on open', async () => {
    const { dir, desc } = await layoutWithBlob();
    await run('mkfifo', [blobPath(dir, desc)]);
    const err = await rejection(ociLayout(dir).fetch(desc));
    expect(isLadingError(err, 'UNSAFE_PATH')).toBe(true);
  });

  it('still reads a regular blob file', async () => {
    const { dir, outside, desc } = await layoutWithBlob();
    await rename(outside, blobPath(dir, desc));
    const chunks: Buffer[] = [];
    for await (const c of await ociLayout(dir).fetch(desc)) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks)).toEqual(await readFile(blobPath(dir, desc)));
  });
});

describe('ociLayout writes', () => {
  it('refuses with UNSAFE_PATH to write through a symlinked blobs, blobs/sha256 or index.json', async () => {
    for (const swapped of ['blobs', join('blobs', 'sha256'), 'index.json', 'oci-layout']) {
      const { dir, outside, desc } = await layoutWithBlob();
      const elsewhere = join(dir, '..', 'elsewhere');
      await mkdir(elsewhere);
      await rename(join(dir, swapped), join(elsewhere, 'moved'));
      await symlink(join(elsewhere, 'moved'), join(dir, swapped));
      const err = await rejection(
        ociLayout(dir).push(desc, Readable.from([await readFile(outside)])),
      );
      expect(isLadingError(err, 'UNSAFE_PATH'), swapped).toBe(true);
      expect((err as Error).message).toContain(`${join(dir, swapped)} is a symlink`);
      // nothing written through the link
      const { stdout } = await run('find', [elsewhere, '-type', 'f', '-newer', outside]);
      expect(stdout.split('\n').filter((l) => l.includes(digestHex(desc.digest)))).toEqual([]);
    }
  });
});

describe('ociLayout at a path that is a file', () => {
  it('reads as no layout (NOT_FOUND) and fails a write with one IO line naming it', async () => {
    const t = await tempDir();
    cleanups.push(t.cleanup);
    const file = join(t.dir, 'plain');
    await writeFile(file, 'not a layout');
    const layout = ociLayout(file);
    expect(await rejection(layout.resolve('x'))).toMatchObject({ code: 'NOT_FOUND', path: file });
    const bytes = Buffer.from('x');
    const desc = { mediaType: MediaType.OciLayerGzip, digest: digestOf(bytes), size: 1 };
    const err = await rejection(layout.push(desc, Readable.from([bytes])));
    expect(err).toMatchObject({ code: 'IO' });
    expect((err as Error).message).toMatch(
      new RegExp(`^cannot write the OCI layout: ${file}(/\\S*)?: not a directory`),
    );
  });
});
