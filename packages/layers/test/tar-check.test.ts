import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { isLadingError, layerFromBytes } from '@lading/core';
import { extract, layerFromFile, layerFromProcess, streamLayer } from '../src/index.js';
import { collect, makeTar, pseudoRandom, tempDir } from './helpers.js';

function scratch(): string {
  return tempDir('lading-tarcheck-');
}

async function rejectsInvalidLayer(p: Promise<unknown>, text?: string): Promise<void> {
  const err: unknown = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isLadingError(err, 'INVALID_LAYER'), String(err)).toBe(true);
  if (text !== undefined) expect((err as Error).message).toContain(text);
}

async function settlesInvalid(
  layer: { digest(): Promise<unknown>; diffId(): Promise<unknown>; size(): Promise<unknown> },
  read: Promise<unknown>,
  text?: string,
): Promise<void> {
  await rejectsInvalidLayer(read, text);
  await rejectsInvalidLayer(layer.digest(), text);
  await rejectsInvalidLayer(layer.diffId(), text);
  await rejectsInvalidLayer(layer.size(), text);
}

// One file of 1000 bytes: header (512) + data (1000) + padding (24) + end (1024).
async function oneFileTar(): Promise<Buffer> {
  return makeTar([{ name: 'data.bin', body: pseudoRandom(1000) }]);
}

describe('tar completeness of written layers', () => {
  it('rejects digest, diffId and size with INVALID_LAYER when the stream is empty', async () => {
    const layer = streamLayer(Readable.from([]));
    await settlesInvalid(layer, collect(layer.compressed()), 'empty');
  });

  it('rejects when the bytes are not a whole number of 512-byte blocks', async () => {
    const tar = await oneFileTar();
    const layer = streamLayer(Readable.from([tar.subarray(0, 1536 + 100)]));
    await settlesInvalid(layer, collect(layer.compressed()), '512-byte blocks');
  });

  it('rejects when the end-of-archive marker is missing', async () => {
    const tar = await oneFileTar();
    expect(tar.length).toBe(2560);
    const layer = streamLayer(Readable.from([tar.subarray(0, 1536)]), { compression: 'none' });
    await settlesInvalid(layer, collect(layer.compressed()), 'end-of-archive');
  });

  it('rejects when the stream stops inside an entry', async () => {
    const tar = await oneFileTar();
    const layer = streamLayer(Readable.from([tar.subarray(0, 1024)]));
    await settlesInvalid(layer, collect(layer.uncompressed()), 'inside the data');
  });

  it('rejects bytes that are not a tar at all', async () => {
    const layer = streamLayer(Readable.from([Buffer.alloc(2048, 'x')]));
    await settlesInvalid(layer, collect(layer.compressed()), 'not a tar archive');
  });

  it('checks the tar inside an already-gzipped source too', async () => {
    const tar = await oneFileTar();
    const layer = streamLayer(Readable.from([gzipSync(tar.subarray(0, 1536))]), {
      compressed: true,
    });
    await settlesInvalid(layer, collect(layer.compressed()), 'end-of-archive');
    const whole = streamLayer(Readable.from([gzipSync(tar)]), { compressed: true });
    await collect(whole.compressed());
    expect(await whole.diffId()).toBe(await layerFromBytes(tar).diffId());
  });

  it('rejects a truncated tar file with layerFromFile, on every pass', async () => {
    const tar = await oneFileTar();
    const file = join(scratch(), 'cut.tar');
    writeFileSync(file, tar.subarray(0, 1536));
    const layer = layerFromFile(file);
    await rejectsInvalidLayer(layer.digest(), 'end-of-archive');
    await rejectsInvalidLayer(collect(layer.compressed()), 'end-of-archive');
  });

  it('accepts an archive with data after the end marker (GNU tar pads to 10 KiB records)', async () => {
    const tar = await oneFileTar();
    const padded = Buffer.concat([tar, Buffer.alloc(10240 - tar.length)]);
    const layer = streamLayer(Readable.from([padded]));
    await collect(layer.compressed());
    expect(await layer.diffId()).toBe(await layerFromBytes(padded).diffId());
  });
});

describe('layerFromProcess', () => {
  it('gives the same layer as the bytes when the producer exits 0', async () => {
    const dir = scratch();
    writeFileSync(join(dir, 'a.txt'), 'hello\n');
    const child = spawn('tar', ['-cf', '-', '-C', dir, 'a.txt'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const layer = layerFromProcess(child);
    const blob = await collect(layer.compressed());
    expect(await layer.size()).toBe(blob.length);
    const tarFile = join(dir, 'same.tar');
    const again = spawn('tar', ['-cf', tarFile, '-C', dir, 'a.txt']);
    await new Promise((resolve) => again.once('close', resolve));
    expect(await layer.diffId()).toBe(await layerFromBytes(readFileSync(tarFile)).diffId());
  });

  it('keeps the output of a producer that exits before the layer is read', async () => {
    const dir = scratch();
    writeFileSync(join(dir, 'a.txt'), 'hello\n');
    const child = spawn('tar', ['-cf', '-', '-C', dir, 'a.txt'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const layer = layerFromProcess(child);
    // Node discards a child's unread stdout once it exits; the layer must not lose it.
    await new Promise((resolve) => child.once('close', resolve));
    const tar = await collect(layer.uncompressed());
    expect(tar.length).toBeGreaterThanOrEqual(2048);
    expect(tar.subarray(0, 5).toString()).toBe('a.txt');
  });

  it("fails with INVALID_LAYER and tar's message when tar exits 2 (a missing directory)", async () => {
    const dir = scratch();
    // GNU tar still writes a complete (empty) archive here: only the exit code tells.
    const child = spawn('tar', ['-cf', '-', '-C', dir, 'missing-dir'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const layer = layerFromProcess(child);
    await settlesInvalid(layer, collect(layer.compressed()), 'exited with code 2');
    await rejectsInvalidLayer(layer.digest(), 'missing-dir');
  });

  it('fails when the producer is killed in the middle of a file', async () => {
    const dir = scratch();
    writeFileSync(join(dir, 'big.bin'), pseudoRandom(3 * 1024 * 1024));
    const child = spawn(
      'sh',
      ['-c', `tar -cf - -C ${dir} big.bin | head -c 200000; kill -KILL $$`],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const layer = layerFromProcess(child);
    await settlesInvalid(layer, collect(layer.compressed()), 'killed (SIGKILL)');
  });

  it('a plain streamLayer over a producer killed mid-file fails too, on the tar check', async () => {
    const dir = scratch();
    writeFileSync(join(dir, 'big.bin'), pseudoRandom(3 * 1024 * 1024));
    const child = spawn(
      'sh',
      ['-c', `tar -cf - -C ${dir} big.bin | head -c 200000; kill -KILL $$`],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const layer = streamLayer(child.stdout);
    await settlesInvalid(layer, collect(layer.compressed()), 'inside the data');
  });

  it('refuses a child without a stdout pipe', () => {
    const child = spawn('true', [], { stdio: 'ignore' });
    expect(() => layerFromProcess(child)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });
});

describe('extract of foreign layers', () => {
  it('reads a layer that ends right after its last entry (no padding, no end blocks)', async () => {
    const tar = await makeTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/first', body: 'one\n' },
      { name: 'etc/last', body: pseudoRandom(1000) },
    ]);
    // umoci 0.4.7 stops right after the last entry's data.
    const cut = tar.subarray(0, tar.length - 1024 - 24);
    const dir = join(scratch(), 'root');
    await extract([layerFromBytes(cut)], dir);
    expect(readFileSync(join(dir, 'etc/first'), 'utf8')).toBe('one\n');
    expect(readFileSync(join(dir, 'etc/last')).equals(pseudoRandom(1000))).toBe(true);
  });

  it('fails with INVALID_LAYER when the layer is cut inside an entry', async () => {
    const tar = await oneFileTar();
    const dir = join(scratch(), 'root');
    await rejectsInvalidLayer(extract([layerFromBytes(tar.subarray(0, 1000))], dir));
  });

  it('fails with a one-line typed error when the destination is a file', async () => {
    const file = join(scratch(), 'afile');
    writeFileSync(file, 'x');
    const err: unknown = await extract([layerFromBytes(await oneFileTar())], file).catch(
      (e: unknown) => e,
    );
    expect(isLadingError(err)).toBe(true);
    expect((err as Error).message).toBe(`cannot extract into: ${file}: already exists`);
    expect((err as { path?: string }).path).toBe(file);
  });
});
