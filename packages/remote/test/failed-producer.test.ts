import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  appendLayers,
  copy,
  emptyImage,
  isLadingError,
  memoryTarget,
  withConfig,
  writeImage,
  type Image,
} from '@lading/core';
import { layerFromProcess, streamLayer } from '@lading/layers';
import { startDistributionRegistry, type DistributionRegistry } from '@lading/testing';
import { RegistryClient, registryTarget, write } from '../src/index.js';
import { tempDir } from './helpers.js';

function scratch(): string {
  return tempDir('lading-producer-');
}

function imageOver(layer: Parameters<typeof appendLayers>[1]): Image {
  return withConfig(appendLayers(emptyImage(), layer), { cmd: ['/bin/sh'] });
}

function bigDir(): string {
  const dir = scratch();
  writeFileSync(join(dir, 'big.bin'), Buffer.alloc(4 * 1024 * 1024, 'x'));
  return dir;
}

// tar of a 4 MiB file, cut 300 kB in (inside the file's data), then the shell is killed.
function killedProducer(dir: string, stderr: 'pipe' | 'ignore') {
  return spawn('sh', ['-c', `tar -cf - -C ${dir} big.bin | head -c 300000; kill -KILL $$`], {
    stdio: ['ignore', 'pipe', stderr],
  });
}

describe('a failed layer producer against the CNCF registry', () => {
  let reg: DistributionRegistry;
  let client: RegistryClient;
  beforeAll(async () => {
    reg = await startDistributionRegistry();
    client = new RegistryClient(reg.host);
  });
  afterAll(async () => {
    await reg.stop();
  });

  async function expectNothingTagged(repo: string): Promise<void> {
    expect(await client.headManifest(repo, 'v1')).toBeUndefined();
    const tags = await client.listTags(repo).catch((e: unknown) => {
      expect(isLadingError(e, 'NOT_FOUND')).toBe(true);
      return [];
    });
    expect(tags).toEqual([]);
  }

  it('write() rejects with INVALID_LAYER and stores no manifest and no tag when tar exits 2', async () => {
    const child = spawn('tar', ['-cf', '-', '-C', scratch(), 'missing-dir'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const push = write(`${reg.host}/producer/exit2:v1`, imageOver(layerFromProcess(child)));
    const err: unknown = await push.done.catch((e: unknown) => e);
    expect(isLadingError(err, 'INVALID_LAYER'), String(err)).toBe(true);
    expect((err as Error).message).toContain('exited with code 2');
    await expectNothingTagged('producer/exit2');
  });

  it('write() rejects and tags nothing when the producer is killed mid-file (with or without layerFromProcess)', async () => {
    const dir = bigDir();
    const viaHelper = write(
      `${reg.host}/producer/killed:v1`,
      imageOver(layerFromProcess(killedProducer(dir, 'pipe'))),
    );
    const e1: unknown = await viaHelper.done.catch((e: unknown) => e);
    expect(isLadingError(e1, 'INVALID_LAYER'), String(e1)).toBe(true);
    await expectNothingTagged('producer/killed');

    const { stdout } = killedProducer(dir, 'ignore');
    if (stdout === null) throw new Error('no stdout pipe');
    const plain = write(`${reg.host}/producer/killed-plain:v1`, imageOver(streamLayer(stdout)));
    const e2: unknown = await plain.done.catch((e: unknown) => e);
    expect(isLadingError(e2, 'INVALID_LAYER'), String(e2)).toBe(true);
    expect((e2 as Error).message).toContain('inside the data');
    await expectNothingTagged('producer/killed-plain');
  });

  /** leftBytes lists the bytes of upload sessions the registry still holds for `repo`. */
  function leftBytes(repo: string): number[] {
    const uploads = join(reg.dataDir, 'docker/registry/v2/repositories', repo, '_uploads');
    if (!existsSync(uploads)) return [];
    return readdirSync(uploads)
      .map((id) => join(uploads, id, 'data'))
      .filter((f) => existsSync(f))
      .map((f) => statSync(f).size);
  }

  it('leaves no upload bytes at the registry when the producer dies or the push is aborted mid-layer', async () => {
    const dir = bigDir();
    const { stdout } = killedProducer(dir, 'ignore');
    if (stdout === null) throw new Error('no stdout pipe');
    const killed = write(`${reg.host}/producer/left-killed:v1`, imageOver(streamLayer(stdout)));
    expect(isLadingError(await killed.done.catch((e: unknown) => e), 'INVALID_LAYER')).toBe(true);
    expect(leftBytes('producer/left-killed')).toEqual([]);

    // A layer that sends 2 MiB, then waits: aborted once the registry has them.
    const controller = new AbortController();
    let sent = 0;
    const slow = new Readable({
      read() {
        if (sent < 2 * 1024 * 1024) {
          sent += 64 * 1024;
          this.push(Buffer.alloc(64 * 1024, 'y'));
        }
      },
    });
    const aborted = write(`${reg.host}/producer/left-aborted:v1`, imageOver(streamLayer(slow)), {
      signal: controller.signal,
    });
    await aborted.authorized;
    while (sent < 2 * 1024 * 1024) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 200));
    controller.abort(new Error('stop'));
    expect(await aborted.done.catch((e: unknown) => e)).toBeInstanceOf(Error);
    expect(leftBytes('producer/left-aborted')).toEqual([]);
    await expectNothingTagged('producer/left-aborted');
  });

  it('writeImage() into a registry target stores nothing either; copy() of a good build still tags', async () => {
    const target = registryTarget(`${reg.host}/producer/write-image`);
    const child = spawn('tar', ['-cf', '-', '-C', scratch(), 'missing-dir'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const e1: unknown = await writeImage(target, 'v1', imageOver(layerFromProcess(child))).catch(
      (e: unknown) => e,
    );
    expect(isLadingError(e1, 'INVALID_LAYER'), String(e1)).toBe(true);
    await expectNothingTagged('producer/write-image');

    // copy() moves stored blobs; a layer only gets stored once it is whole.
    const mem = memoryTarget();
    const good = spawn('tar', ['-cf', '-', '-C', bigDir(), 'big.bin'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await writeImage(mem, 'v1', imageOver(layerFromProcess(good)));
    const root = await copy(mem, 'v1', registryTarget(`${reg.host}/producer/copied`), 'v1');
    expect((await client.headManifest('producer/copied', 'v1'))?.digest).toBe(root.digest);
  });
});
