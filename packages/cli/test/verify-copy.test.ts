import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendLayers,
  digestHex,
  emptyImage,
  layerFromBytes,
  writeImage,
  type Digest,
} from '@lading/core';
import { createRegistry, filesystemStorage, type Registry } from '@lading/registry';
import { registryTarget } from '@lading/remote';
import { filesTar, recordingProxy, type RecordingProxy } from '@lading/testing';
import { lading } from './helpers.js';

// Copies hash each blob once, where it is read (the source registry's or
// layout's fetch verifies it); the destination then skips its own hash.
// These tests hold the guarantee that rests on that: a blob the source
// registry serves with the right length but the wrong bytes fails the copy
// before anything is committed at the destination.

/** A layer over 1 MiB (uploaded as a stream, not in one PUT), stored without compression. */
function bigLayer(): Buffer {
  return gzipSync(filesTar([{ name: 'app/data.bin', body: randomBytes(3 * 1024 * 1024) }]), {
    level: 0,
  });
}

let work: string;
let source: Registry;
let sourceHost: string;
let sourceStorage: string;
let dest: Registry;
let proxy: RecordingProxy;
let layerDigest: Digest;
let layerSize: number;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-verify-copy-'));
  sourceStorage = join(work, 'source');
  source = createRegistry({ storage: filesystemStorage(sourceStorage) });
  sourceHost = new URL((await source.listen({ host: '127.0.0.1', port: 0 })).url).host;
  dest = createRegistry({ storage: filesystemStorage(join(work, 'dest')) });
  proxy = await recordingProxy((await dest.listen({ host: '127.0.0.1', port: 0 })).url);
  const good = bigLayer();
  const evil = bigLayer();
  expect(evil.length).toBe(good.length);
  const layer = layerFromBytes(good);
  layerDigest = await layer.digest();
  layerSize = good.length;
  await writeImage(
    registryTarget(`${sourceHost}/copy/tampered`),
    'v1',
    appendLayers(emptyImage(), layer),
  );
  // Swap the stored bytes: same length, other content.
  await writeFile(join(sourceStorage, 'blobs', 'sha256', digestHex(layerDigest)), evil);
});

afterAll(async () => {
  try {
    await proxy.close();
    await dest.close();
    await source.close();
  } finally {
    await rm(work, { recursive: true, force: true, maxRetries: 5 });
  }
});

describe('lading cp from a registry that serves a tampered blob', () => {
  it('fails with DIGEST_MISMATCH and leaves no blob, tag or temp file in an OCI layout', async () => {
    const dir = join(work, 'layout');
    const r = await lading('cp', `${sourceHost}/copy/tampered:v1`, `oci:${dir}:v1`);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/digest mismatch/i);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('lading:'))).toHaveLength(1);
    const blob = join(dir, 'blobs', 'sha256', digestHex(layerDigest));
    expect(await stat(blob).catch(() => undefined)).toBeUndefined();
    // The copy created the layout: it is gone again.
    expect(await stat(dir).catch(() => undefined)).toBeUndefined();
    // Into a layout that was there: no blob, no tag, no temp file either.
    const kept = join(work, 'kept-layout');
    await mkdir(kept);
    await writeFile(join(kept, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await writeFile(join(kept, 'index.json'), '{"schemaVersion":2,"manifests":[]}');
    expect((await lading('cp', `${sourceHost}/copy/tampered:v1`, `oci:${kept}:v1`)).code).toBe(1);
    expect(
      await stat(join(kept, 'blobs', 'sha256', digestHex(layerDigest))).catch(() => undefined),
    ).toBeUndefined();
    const index = await readFile(join(kept, 'index.json'), 'utf8');
    expect((JSON.parse(index) as { manifests?: unknown[] }).manifests ?? []).toEqual([]);
    expect((await readdir(kept)).filter((n) => n.includes('.lading-'))).toEqual([]);
  });

  it('fails with DIGEST_MISMATCH and never commits the blob, the manifest or the tag at a registry', async () => {
    proxy.clear();
    const r = await lading('cp', `${sourceHost}/copy/tampered:v1`, `${proxy.host}/copy/dst:v1`);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/digest mismatch/i);
    const puts = proxy.requests.filter((q) => q.method === 'PUT');
    // The layer goes as the body of its commit (PUT ?digest=): cut short
    // before its last bytes, so the registry never commits it.
    const layerPuts = puts.filter(
      (q) => q.path.includes(encodeURIComponent(layerDigest)) || q.path.includes(layerDigest),
    );
    expect(layerPuts.filter((q) => q.bodyBytes >= layerSize)).toEqual([]);
    expect(puts.filter((q) => q.path.includes('/manifests/'))).toEqual([]);
    const head = await fetch(`${proxy.url}/v2/copy/dst/blobs/${layerDigest}`, { method: 'HEAD' });
    expect(head.status).toBe(404);
  });
});

describe('lading blob from a registry that serves a tampered blob', () => {
  it('to FILE: fails and writes no FILE; to stdout: says the bytes already sent cannot be trusted', async () => {
    const file = join(work, 'blob-out');
    const toFile = await lading('blob', `${sourceHost}/copy/tampered@${layerDigest}`, '-o', file);
    expect(toFile.code).toBe(1);
    expect(toFile.stderr).toContain('hint: the content changed or was corrupted in transit');
    expect(await stat(file).catch(() => undefined)).toBeUndefined();
    const toStdout = await lading('blob', `${sourceHost}/copy/tampered@${layerDigest}`);
    expect(toStdout.code).toBe(1);
    expect(toStdout.stderr).toMatch(/digest mismatch/i);
    expect(toStdout.stderr).toMatch(
      /^hint: \d+ bytes were already written to stdout before the failure and cannot be trusted: discard them$/m,
    );
    expect(toStdout.stderr).not.toContain('nothing was written');
  });
});
