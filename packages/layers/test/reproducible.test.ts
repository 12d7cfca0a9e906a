import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { appendLayers, emptyImage, withConfig, type Image } from '@lading/core';
import { layerFromDirectory, type DirectoryLayerOptions } from '../src/index.js';
import { tempDir } from './helpers.js';

function appDir(): string {
  const dir = tempDir('lading-repro-');
  mkdirSync(join(dir, 'lib'));
  writeFileSync(join(dir, 'run'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  writeFileSync(join(dir, 'lib', 'data.txt'), 'data\n');
  return dir;
}

function touchAll(dir: string, when: Date): void {
  for (const p of ['run', 'lib/data.txt', 'lib', '.']) utimesSync(join(dir, p), when, when);
}

// The README Example, as written there.
function readmeImage(dir: string, options: DirectoryLayerOptions = {}): Image {
  const layer = layerFromDirectory(dir, { prefix: '/app', ...options });
  return withConfig(appendLayers(emptyImage(), layer), { entrypoint: ['/app/run'] });
}

describe('layerFromDirectory reproducibility', () => {
  let saved: string | undefined;
  beforeEach(() => {
    saved = process.env.SOURCE_DATE_EPOCH;
    delete process.env.SOURCE_DATE_EPOCH;
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.SOURCE_DATE_EPOCH;
    else process.env.SOURCE_DATE_EPOCH = saved;
  });

  it("gives the README Example's image the same digest after the files are touched", async () => {
    const dir = appDir();
    touchAll(dir, new Date('2024-01-01T00:00:00Z'));
    const first = await readmeImage(dir).digest();
    touchAll(dir, new Date('2025-06-15T12:34:56Z'));
    expect(await readmeImage(dir).digest()).toBe(first);
  });

  it('keeps real mtimes only when asked (keepMtimes), and clamps to SOURCE_DATE_EPOCH when set', async () => {
    const dir = appDir();
    touchAll(dir, new Date('2024-01-01T00:00:00Z'));
    const kept = await readmeImage(dir, { keepMtimes: true }).digest();
    touchAll(dir, new Date('2025-06-15T12:34:56Z'));
    expect(await readmeImage(dir, { keepMtimes: true }).digest()).not.toBe(kept);
    const zero = await readmeImage(dir).digest();
    expect(await readmeImage(dir, { sourceDateEpoch: 0 }).digest()).toBe(zero);
    process.env.SOURCE_DATE_EPOCH = '1700000000';
    const epoch = await readmeImage(dir).digest();
    expect(epoch).not.toBe(zero);
    expect(await readmeImage(dir, { sourceDateEpoch: 1_700_000_000 }).digest()).toBe(epoch);
  });

  it('writes a config without null fields and a history without local paths', async () => {
    const dir = appDir();
    const image = readmeImage(dir);
    const raw = Buffer.from(await image.rawConfig()).toString('utf8');
    expect(raw).not.toContain('null');
    expect(raw).not.toContain(dir);
    expect((await image.configFile()).config).toEqual({ Entrypoint: ['/app/run'] });
  });
});
