import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { htpasswdEntry } from '@lading/testing';
import { lading, spawnLading } from './helpers.js';

let work: string;
let a: Registry;
let b: Registry;
let hostA: string;
let hostB: string;

async function start(user: string, password: string): Promise<[Registry, string]> {
  const r = createRegistry({
    storage: memoryStorage(),
    auth: { type: 'basic', htpasswd: `${htpasswdEntry(user, password)}\n` },
  });
  return [r, new URL((await r.listen({ host: '127.0.0.1', port: 0 })).url).host];
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-cli-creds-'));
  [a, hostA] = await start('alice', 'alice-secret');
  [b, hostB] = await start('bob', 'bob-secret');
  const dir = join(work, 'src');
  await mkdir(dir);
  await writeFile(join(dir, 'f'), 'content');
  const r = await lading(
    'build',
    dir,
    `${hostA}/creds/app:v1`,
    '-u',
    'alice',
    '-p',
    'alice-secret',
  );
  expect(r.code).toBe(0);
});

afterAll(async () => {
  try {
    await a.close();
    await b.close();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

describe('lading cp credentials', () => {
  it('uses --src-… and --dest-… credentials for each side', async () => {
    const { code, stderr } = await spawnLading(
      [
        'cp',
        `${hostA}/creds/app:v1`,
        `${hostB}/creds/copy:v1`,
        '--src-username',
        'alice',
        '--src-password',
        'alice-secret',
        '--dest-username',
        'bob',
        '--dest-password-stdin',
      ],
      'bob-secret\n',
    ).exit;
    expect(stderr).not.toContain('secret');
    expect(code).toBe(0);
    expect(stderr).toMatch(/warning: .*--password-stdin/);
    const digest = await lading(
      'digest',
      `${hostB}/creds/copy:v1`,
      '-u',
      'bob',
      '-p',
      'bob-secret',
    );
    expect(digest.code).toBe(0);
  });

  it('reads --password-stdin once for both sides', async () => {
    const { code, stderr } = await spawnLading(
      ['cp', `${hostA}/creds/app:v1`, `${hostA}/creds/again:v1`, '-u', 'alice', '--password-stdin'],
      'alice-secret\n',
    ).exit;
    expect(stderr).not.toMatch(/warning/);
    expect(code).toBe(0);
  });

  it('exits 3 when one side lacks its credentials', async () => {
    const r = await lading(
      'cp',
      `${hostA}/creds/app:v1`,
      `${hostB}/creds/denied:v1`,
      '--src-username',
      'alice',
      '--src-password',
      'alice-secret',
    );
    expect(r.code).toBe(3);
    // -u/-p for both sides: alice is no user of B.
    const both = await lading(
      'cp',
      `${hostA}/creds/app:v1`,
      `${hostB}/creds/denied:v1`,
      '-u',
      'alice',
      '-p',
      'alice-secret',
    );
    expect(both.code).toBe(3);
    const twoStdins = await lading(
      'cp',
      `${hostA}/creds/app:v1`,
      `${hostB}/creds/x:v1`,
      '--src-password-stdin',
      '--dest-password-stdin',
    );
    expect(twoStdins.code).toBe(2);
  });

  it('reads per-registry credentials from the docker config', async () => {
    const config = join(work, 'docker');
    await mkdir(config);
    const auth = (u: string, p: string): { auth: string } => ({
      auth: Buffer.from(`${u}:${p}`).toString('base64'),
    });
    await writeFile(
      join(config, 'config.json'),
      JSON.stringify({
        auths: { [hostA]: auth('alice', 'alice-secret'), [hostB]: auth('bob', 'bob-secret') },
      }),
    );
    const saved = process.env.DOCKER_CONFIG;
    process.env.DOCKER_CONFIG = config;
    try {
      const r = await lading('cp', `${hostA}/creds/app:v1`, `${hostB}/creds/from-config:v1`);
      expect(r.stderr).not.toMatch(/warning|lading: /);
      expect(r.code).toBe(0);
    } finally {
      if (saved === undefined) delete process.env.DOCKER_CONFIG;
      else process.env.DOCKER_CONFIG = saved;
    }
  });
});
