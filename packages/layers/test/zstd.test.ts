import { describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DescribedLayer,
  MediaType,
  createDecompressor,
  digestOf,
  layerFromBytes,
  zstdAvailable,
  type Layer,
} from '@lading/core';
import { sniffCompression, zstdFrameSync } from '@lading/core/internal';
import {
  directoryTar,
  extract,
  extractVerified,
  layerFromDirectory,
  layerFromFile,
  layerFromOpener,
  streamLayer,
  type CompressionOptions,
} from '../src/index.js';
import { collect, pseudoRandom, run, tempDir, textish } from './helpers.js';

function tree(): string {
  const d = tempDir('lading-zstd-');
  mkdirSync(join(d, 'a/b'), { recursive: true });
  for (let i = 0; i < 50; i++) writeFileSync(join(d, `a/f${i}`), textish(2000 + i * 91, i));
  writeFileSync(join(d, 'a/b/big.bin'), Buffer.concat([textish(1_500_000), pseudoRandom(900_000)]));
  return d;
}

function chunked(buf: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

async function unzstd(blob: Buffer): Promise<Buffer> {
  const d = createDecompressor('zstd');
  const [out] = await Promise.all([collect(d), pipeline(Readable.from([blob]), d)]);
  return out;
}

/** blobOf reads a layer's blob and checks its size and digest settle. */
async function blobOf(layer: Layer): Promise<{ blob: Buffer; digest: string }> {
  const blob = await collect(layer.compressed());
  expect(await layer.size()).toBe(blob.length);
  return { blob, digest: await layer.digest() };
}

const kinds = (d: string, tar: Buffer) => ({
  directory: (o: CompressionOptions) => layerFromDirectory(d, { mtime: 0, ...o }),
  stream: (o: CompressionOptions) => streamLayer(chunked(tar, 77_777), o),
  opener: (o: CompressionOptions) => layerFromOpener(() => chunked(tar, 300_000), o),
});

describe('layer byte stability', () => {
  it('gives the same gzip digest for 1, 2 and 4 workers for directory, stream and opener layers', async () => {
    const d = tree();
    const tar = await collect(directoryTar(d, { mtime: 0 }));
    const ref = await layerFromBytes(tar).digest();
    for (const [kind, make] of Object.entries(kinds(d, tar))) {
      for (const workers of [1, 2, 4]) {
        const { digest } = await blobOf(make({ workers }));
        expect(`${kind} ${workers} ${digest}`).toBe(`${kind} ${workers} ${ref}`);
      }
    }
  });
});

describe('zstd layers', () => {
  it('compress to the same zstd bytes for 1, 2 and 4 workers (directory, stream, opener), or fail UNSUPPORTED on an older Node', async () => {
    const d = tree();
    const tar = await collect(directoryTar(d, { mtime: 0 }));
    if (!zstdAvailable()) {
      for (const make of Object.values(kinds(d, tar))) {
        expect(() => make({ compression: 'zstd' })).toThrow(
          expect.objectContaining({
            code: 'UNSUPPORTED',
            message: expect.stringContaining('Node ≥ 22.15') as unknown,
          }),
        );
      }
      expect(() => layerFromBytes(tar, { compression: 'zstd' })).toThrow(
        expect.objectContaining({ code: 'UNSUPPORTED' }),
      );
      expect(() => createDecompressor('zstd')).toThrow(
        expect.objectContaining({ code: 'UNSUPPORTED' }),
      );
      return;
    }
    const ref = layerFromBytes(tar, { compression: 'zstd' });
    expect(ref.mediaType).toBe(MediaType.OciLayerZstd);
    const refDigest = await ref.digest();
    for (const [kind, make] of Object.entries(kinds(d, tar))) {
      for (const workers of [1, 2, 4]) {
        const layer = make({ compression: 'zstd', workers });
        expect(layer.mediaType).toBe(MediaType.OciLayerZstd);
        const { blob, digest } = await blobOf(layer);
        expect(`${kind} ${workers} ${digest}`).toBe(`${kind} ${workers} ${refDigest}`);
        expect(sniffCompression(blob)).toBe('zstd');
        expect((await unzstd(blob)).equals(tar)).toBe(true);
        expect(await layer.diffId()).toBe(await ref.diffId());
      }
    }
    // A level is honoured, and changes the bytes.
    const { blob: l9 } = await blobOf(
      streamLayer(chunked(tar, 1 << 20), { compression: 'zstd', level: 9 }),
    );
    expect(l9.length).toBeLessThan((await collect(ref.compressed())).length);
    expect(() => streamLayer(chunked(tar, 1), { compression: 'zstd', level: 23 })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    // The system zstd tool reads the concatenated frames.
    const z = await run('zstd', ['-dc'], l9);
    if (z.code !== 127) expect(z.code).toBe(0);
  });

  it('reads a described zstd layer, or fails UNSUPPORTED without opening its blob or leaving it open', async () => {
    const d = tree();
    const tar = await collect(directoryTar(d, { mtime: 0 }));
    const blob = zstdAvailable()
      ? await collect(layerFromBytes(tar, { compression: 'zstd' }).compressed())
      : Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]);
    /** Blob is a layer listed in a manifest: it counts the blobs it hands out. */
    class Blob extends DescribedLayer {
      readonly opened: Readable[] = [];
      compressed(): Readable {
        const r = Readable.from([blob]);
        this.opened.push(r);
        return r;
      }
    }
    const layer = new Blob(
      { mediaType: MediaType.OciLayerZstd, digest: digestOf(blob), size: blob.length },
      () => layerFromBytes(tar).diffId(),
      undefined,
    );
    const top = tempDir('lading-zstd-d-');
    if (!zstdAvailable()) {
      expect(() => layer.uncompressed()).toThrow(expect.objectContaining({ code: 'UNSUPPORTED' }));
      // The blob it had opened is closed, not left to hold a connection.
      expect(layer.opened.map((r) => r.destroyed)).toEqual([true]);
      await expect(extractVerified([layer], join(top, 'root'))).rejects.toMatchObject({
        code: 'UNSUPPORTED',
      });
      // extractVerified asks for the decompressor before the blob.
      expect(layer.opened).toHaveLength(1);
      return;
    }
    expect((await collect(layer.uncompressed())).equals(tar)).toBe(true);
    await extractVerified([layer], join(top, 'root'));
    expect(readFileSync(join(top, 'root', 'a/f3'), 'utf8')).toBe(
      readFileSync(join(d, 'a/f3'), 'utf8'),
    );
    expect(layer.opened).toHaveLength(2);
  });

  it('round-trip through extract, and a .tar.zst file is detected by its magic bytes', async () => {
    const d = tree();
    const tar = await collect(directoryTar(d, { mtime: 0 }));
    const top = tempDir('lading-zstd-x-');
    const file = join(top, 'layer.tar.zst');
    if (!zstdAvailable()) {
      // A zstd blob made elsewhere: reading it needs zstd too.
      writeFileSync(file, Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]));
      const layer = layerFromFile(file);
      expect(layer.mediaType).toBe(MediaType.OciLayerZstd);
      await expect(layer.diffId()).rejects.toMatchObject({ code: 'UNSUPPORTED' });
      await expect(extract([layer], join(top, 'root'))).rejects.toMatchObject({
        code: 'UNSUPPORTED',
      });
      // Each failed pass closes the file it opened (it was left open, and
      // failed the process once the file was gone).
      expect(await openedFor(file)).toBe(0);
      return;
    }
    const built = layerFromDirectory(d, { mtime: 0, compression: 'zstd', workers: 2 });
    const root = join(top, 'root');
    mkdirSync(root);
    await extract([built], root);
    expect(
      readFileSync(join(root, 'a/b/big.bin')).equals(readFileSync(join(d, 'a/b/big.bin'))),
    ).toBe(true);
    expect(readFileSync(join(root, 'a/f7'), 'utf8')).toBe(readFileSync(join(d, 'a/f7'), 'utf8'));
    // The blob on disk, read back as a file layer: zstd passed through, never recompressed.
    const blob = await collect(built.compressed());
    writeFileSync(file, blob);
    const fromFile = layerFromFile(file);
    expect(fromFile.mediaType).toBe(MediaType.OciLayerZstd);
    expect(await fromFile.digest()).toBe(await built.digest());
    expect(await fromFile.diffId()).toBe(await built.diffId());
    expect((await collect(fromFile.uncompressed())).equals(tar)).toBe(true);
    const root2 = join(top, 'root2');
    mkdirSync(root2);
    await extract([fromFile], root2);
    expect(readFileSync(join(root2, 'a/f3'), 'utf8')).toBe(readFileSync(join(d, 'a/f3'), 'utf8'));
    // A precompressed zstd stream layer, and a buffered one (magic bytes).
    const s = streamLayer(Readable.from([blob]), { compressed: 'zstd' });
    expect(s.mediaType).toBe(MediaType.OciLayerZstd);
    expect((await collect(s.uncompressed())).equals(tar)).toBe(true);
    expect(await s.digest()).toBe(await built.digest());
    expect(await layerFromBytes(blob).diffId()).toBe(await built.diffId());
    // An empty tar stream is still one valid frame.
    expect((await unzstd(zstdFrameSync(Buffer.alloc(0), 3))).length).toBe(0);
    // Bytes after the last frame, which Node's decompressor drops, are refused
    // (as the zstd tool and Go's decoders refuse them), zeros too.
    for (const [i, tail] of [Buffer.alloc(512), Buffer.from('trailing')].entries()) {
      const padded = join(top, `padded${i}.tar.zst`);
      writeFileSync(padded, Buffer.concat([blob, tail]));
      const bad = layerFromFile(padded);
      const refused = expect.objectContaining({
        code: 'INVALID_LAYER',
        message: expect.stringContaining(`after the last frame, at byte ${blob.length}`) as string,
      }) as object;
      await expect(bad.diffId()).rejects.toMatchObject(refused);
      const root3 = join(top, `root3-${i}`);
      mkdirSync(root3);
      await expect(extract([bad], root3)).rejects.toMatchObject(refused);
    }
  });
});

/** openedFor waits up to a second for this process to hold no descriptor of `path`, and says how many it holds. */
async function openedFor(path: string): Promise<number> {
  const count = (): number =>
    readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === path;
      } catch {
        return false;
      }
    }).length;
  for (let i = 0; i < 100 && count() > 0; i++) await new Promise((r) => setTimeout(r, 10));
  return count();
}
