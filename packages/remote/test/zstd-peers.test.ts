// zstd layers between lading and real peers on the CNCF registry: skopeo
// recompresses an image to zstd that lading pulls and extracts, and (where Node has
// zstd) lading pushes a zstd image that skopeo copies out, recompressed to
// gzip for umoci to unpack.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaType, appendLayers, emptyImage, zstdAvailable } from '@lading/core';
import { extract, layerFromDirectory } from '@lading/layers';
import { startDistributionRegistry, type DistributionRegistry } from '@lading/testing';
import { pullImage, write } from '../src/index.js';

const exec = promisify(execFile);

async function run(cmd: string, args: string[]): Promise<string> {
  const { stdout } = await exec(cmd, args, { maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

let reg: DistributionRegistry;
let work: string;
let content: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'lading-zstd-peers-'));
  content = join(work, 'content');
  mkdirSync(join(content, 'app/lib'), { recursive: true });
  writeFileSync(join(content, 'app/hello.txt'), 'hello from lading\n'.repeat(5000));
  const big = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 12)) & 0xff;
  writeFileSync(join(content, 'app/lib/big.bin'), big);
  // Bytes of this run only: skopeo 1.9 keeps a blob-info cache across runs
  // (/var/lib/containers/cache for root) and, told to recompress to zstd,
  // can mount a gzip blob it knows the registry has instead (the likely
  // cause of one failure: a gzip layer back from a registry that came up on
  // the port of an earlier run's).
  writeFileSync(join(content, 'app/run-id'), randomBytes(16).toString('hex'));
  reg = await startDistributionRegistry();
});

afterAll(async () => {
  try {
    await reg.stop();
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

function sameTree(root: string): void {
  for (const f of ['app/hello.txt', 'app/lib/big.bin']) {
    expect(readFileSync(join(root, f)).equals(readFileSync(join(content, f)))).toBe(true);
  }
}

function layerTypes(layout: string): string[] {
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const digest = index.manifests[0]?.digest.slice('sha256:'.length) ?? '';
  const manifest = JSON.parse(readFileSync(join(layout, 'blobs/sha256', digest), 'utf8')) as {
    layers: { mediaType: string }[];
  };
  return manifest.layers.map((l) => l.mediaType);
}

describe('zstd layers with skopeo and umoci on the CNCF registry', () => {
  it('pulls and extracts a zstd image recompressed by skopeo, or fails UNSUPPORTED without zstd in Node', async () => {
    // A gzip image from lading, recompressed to zstd by skopeo (umoci 0.4's
    // insert writes tars without their end padding, which tar readers refuse).
    await write(
      `${reg.host}/peers/gzip:1`,
      appendLayers(emptyImage(), layerFromDirectory(content, { compression: 'gzip' })),
    ).done;
    await run('skopeo', [
      'copy',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      '--dest-compress-format',
      'zstd',
      `docker://${reg.host}/peers/gzip:1`,
      `docker://${reg.host}/peers/from-skopeo:1`,
    ]);
    const image = await pullImage(`${reg.host}/peers/from-skopeo:1`);
    const layers = await image.layers();
    expect(layers.map((l) => l.mediaType)).toEqual([MediaType.OciLayerZstd]);
    const root = join(work, 'from-skopeo');
    mkdirSync(root);
    if (!zstdAvailable()) {
      await expect(extract(layers, root)).rejects.toMatchObject({
        code: 'UNSUPPORTED',
        message: expect.stringContaining('Node ≥ 22.15') as unknown,
      });
      expect(readdirSync(root)).toEqual([]);
      return;
    }
    await extract(layers, root);
    sameTree(root);
  });

  it('pushes a zstd layer that skopeo copies out (recompressed to gzip) and umoci unpacks, or fails UNSUPPORTED without zstd in Node', async () => {
    if (!zstdAvailable()) {
      expect(() => layerFromDirectory(content, { compression: 'zstd' })).toThrow(
        expect.objectContaining({ code: 'UNSUPPORTED' }),
      );
      return;
    }
    const layer = layerFromDirectory(content, { compression: 'zstd', workers: 2 });
    const image = appendLayers(emptyImage(), layer);
    const ref = `${reg.host}/peers/from-lading:1`;
    await write(ref, image).done;
    // skopeo keeps zstd when asked for nothing, and recompresses on request.
    const kept = join(work, 'kept');
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${kept}:v1`]);
    expect(layerTypes(kept)).toEqual([MediaType.OciLayerZstd]);
    const gz = join(work, 'gz');
    await run('skopeo', [
      'copy',
      '--src-tls-verify=false',
      '--dest-compress-format',
      'gzip',
      `docker://${ref}`,
      `oci:${gz}:v1`,
    ]);
    expect(layerTypes(gz)).toEqual([MediaType.OciLayerGzip]);
    const bundle = join(work, 'bundle');
    await run('umoci', ['unpack', '--rootless', '--image', `${gz}:v1`, bundle]);
    sameTree(join(bundle, 'rootfs'));
  });
});
