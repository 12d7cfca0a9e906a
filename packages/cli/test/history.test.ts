import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendLayers,
  emptyImage,
  layerFromBytes,
  withCreated,
  writeImage,
  type ConfigFile,
} from '@lading/core';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { registryTarget } from '@lading/remote';
import { lading } from './helpers.js';

let work: string;
let registry: Registry;
let host: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-history-'));
  await mkdir(join(work, 'app'));
  await writeFile(join(work, 'app', 'run'), 'run\n');
  registry = createRegistry({ storage: memoryStorage() });
  host = new URL((await registry.listen({ host: '127.0.0.1', port: 0 })).url).host;
});

afterAll(async () => {
  await registry.close();
  await rm(work, { recursive: true, force: true });
});

describe('lading append', () => {
  it("dates the config and the new layers' history, and keeps the base's history dates", async () => {
    const base = withCreated(
      appendLayers(emptyImage(), layerFromBytes(Buffer.from('base layer'))),
      new Date('2024-05-01T00:00:00Z'),
    );
    await writeImage(registryTarget(`${host}/h/base`), '1', base);
    const r = await lading(
      'append',
      `${host}/h/base:1`,
      `${host}/h/app:1`,
      '--layer',
      `${join(work, 'app')}:/app`,
      '--source-date-epoch',
      '1000',
      '-q',
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const config = JSON.parse((await lading('config', `${host}/h/app:1`)).stdout) as ConfigFile;
    expect(config.created).toBe('1970-01-01T00:16:40Z');
    expect(config.history?.map((h) => h.created)).toEqual([
      '2024-05-01T00:00:00Z',
      '1970-01-01T00:16:40Z',
    ]);
    expect(config.history?.[1]?.created_by).toBe('lading append --layer :/app');
  });
});
