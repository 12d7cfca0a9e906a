import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MediaType, zstdAvailable } from '@lading/core';
import { extract, layerFromFile } from '@lading/layers';
import { ladingProcess, tempDir } from './helpers.js';

async function source(): Promise<{ work: string; src: string }> {
  const work = await tempDir('lading-cli-compression-');
  const src = join(work, 'src');
  await mkdir(join(src, 'etc'), { recursive: true });
  await writeFile(join(src, 'etc/conf'), 'key = value\n'.repeat(200_000));
  return { work, src };
}

/** layerOf reads the first layer's descriptor of the image in an OCI layout. */
async function layerOf(layout: string): Promise<{ digest: string; mediaType: string }> {
  const blob = async (d: string) =>
    JSON.parse(await readFile(join(layout, 'blobs/sha256', d.slice(7)), 'utf8')) as unknown;
  const top = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const m = (await blob(top.manifests[0]?.digest ?? '')) as {
    layers: { digest: string; mediaType: string }[];
  };
  return m.layers[0] ?? { digest: '', mediaType: '' };
}

describe('lading build --compression', () => {
  it('gives the same image digest for --workers 1, 2 and the default', async () => {
    const { work, src } = await source();
    const digests = new Set<string>();
    for (const extra of [['--workers', '1'], ['--workers', '2'], []]) {
      const r = await ladingProcess(
        'build',
        src,
        `oci:${join(work, 'l')}:${extra.length}`,
        '-q',
        ...extra,
      );
      expect(r.code).toBe(0);
      digests.add(r.stdout.trim());
    }
    expect(digests.size).toBe(1);
  });

  it('writes a zstd layer with zstd[:LEVEL], or fails with one UNSUPPORTED line naming the Node version', async () => {
    const { work, src } = await source();
    const layout = join(work, 'z');
    const r = await ladingProcess('build', src, `oci:${layout}:v1`, '--compression', 'zstd:7');
    if (!zstdAvailable()) {
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain('Node ≥ 22.15');
      return;
    }
    expect(r.code).toBe(0);
    const layer = await layerOf(layout);
    expect(layer.mediaType).toBe(MediaType.OciLayerZstd);
    // The layer blob, read back as a file layer (zstd detected by its magic bytes).
    const back = join(work, 'back');
    await extract([layerFromFile(join(layout, 'blobs/sha256', layer.digest.slice(7)))], back);
    expect(await readFile(join(back, 'etc/conf'), 'utf8')).toBe('key = value\n'.repeat(200_000));
  });

  it('refuses an unknown compression or a level out of range', async () => {
    const { work, src } = await source();
    const bad = await ladingProcess(
      'build',
      src,
      `oci:${join(work, 'b')}:v1`,
      '--compression',
      'brotli',
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--compression');
    const level = await ladingProcess(
      'build',
      src,
      `oci:${join(work, 'b')}:v1`,
      '--compression',
      'gzip:12',
    );
    expect(level.code).not.toBe(0);
    expect(level.stderr).toContain('level');
  });
});
