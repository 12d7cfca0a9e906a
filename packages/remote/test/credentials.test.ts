import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { layerFromBytes } from '@lading/core';
import { startDistributionRegistry, type DistributionRegistry } from '@lading/testing';
import { checkPushPermission, resolveCredentials, write } from '../src/index.js';
import { testImage } from './helpers.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('resolveCredentials', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lading-creds-'));
    await mkdir(join(dir, 'docker'));
    await mkdir(join(dir, 'xdg', 'containers'), { recursive: true });
    await mkdir(join(dir, 'bin'));
    await writeFile(
      join(dir, 'docker', 'config.json'),
      JSON.stringify({
        auths: {
          'reg.example:5000': { auth: b64('alice:pa:ss') },
          'https://index.docker.io/v1/': { username: 'hubuser', password: 'hubpass' },
          'token.example': { identitytoken: 'refresh-me', auth: b64('tok:') },
        },
        credHelpers: { 'helped.example': 'fake' },
        credsStore: 'fake',
      }),
    );
    await writeFile(
      join(dir, 'xdg', 'containers', 'auth.json'),
      JSON.stringify({ auths: { 'podman.example': { auth: b64('pod:man') } } }),
    );
    await writeFile(
      join(dir, 'authfile.json'),
      JSON.stringify({ auths: { 'reg.example:5000': { auth: b64('override:pw') } } }),
    );
    // a credential helper: echoes the server it was asked about in the username
    const helper = join(dir, 'bin', 'docker-credential-fake');
    await writeFile(
      helper,
      '#!/bin/sh\nread server\ncase "$server" in\n  helped.example) echo "{\\"Username\\":\\"from-helper\\",\\"Secret\\":\\"$server-secret\\"}";;\n  store.example) echo "{\\"Username\\":\\"<token>\\",\\"Secret\\":\\"identity\\"}";;\n  bare.example) echo "TOPSECRET-hunter2";;\n  *) echo "credentials not found in native keychain"; exit 1;;\nesac\n',
    );
    await chmod(helper, 0o755);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const env = (): Record<string, string | undefined> => ({
    DOCKER_CONFIG: join(dir, 'docker'),
    PATH: `${join(dir, 'bin')}:${process.env.PATH ?? ''}`,
    HOME: dir,
  });

  it('reads auth (base64 user:password, colons kept in the password) from DOCKER_CONFIG', async () => {
    expect(await resolveCredentials('reg.example:5000', { env: env() })).toEqual({
      username: 'alice',
      password: 'pa:ss',
    });
  });
  it('maps docker.io to the v1 index key and reads username/password', async () => {
    expect(await resolveCredentials('docker.io', { env: env() })).toEqual({
      username: 'hubuser',
      password: 'hubpass',
    });
  });
  it('reads an identitytoken', async () => {
    expect(await resolveCredentials('token.example', { env: env() })).toEqual({
      identityToken: 'refresh-me',
      username: 'tok',
    });
  });
  it('runs docker-credential-<name> from credHelpers', async () => {
    expect(await resolveCredentials('helped.example', { env: env() })).toEqual({
      username: 'from-helper',
      password: 'helped.example-secret',
    });
  });
  it('fails UNAUTHORIZED on a helper that prints no JSON, never quoting what it printed', async () => {
    const err: unknown = await resolveCredentials('bare.example', { env: env() }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'UNAUTHORIZED' });
    expect((err as Error).message).toBe(
      'credential helper docker-credential-fake printed invalid JSON',
    );
    // (the CLI's --debug prints the cause's stack too)
    expect(inspect(err)).not.toContain('hunter2');
  });
  it('falls back to credsStore and maps a <token> username to an identity token', async () => {
    expect(await resolveCredentials('store.example', { env: env() })).toEqual({
      identityToken: 'identity',
    });
    expect(await resolveCredentials('unknown.example', { env: env() })).toBeUndefined();
  });
  it('prefers REGISTRY_AUTH_FILE, then podman auth.json, then docker config', async () => {
    const e = {
      ...env(),
      REGISTRY_AUTH_FILE: join(dir, 'authfile.json'),
      XDG_RUNTIME_DIR: join(dir, 'xdg'),
    };
    expect(await resolveCredentials('reg.example:5000', { env: e })).toEqual({
      username: 'override',
      password: 'pw',
    });
    expect(await resolveCredentials('podman.example', { env: e })).toEqual({
      username: 'pod',
      password: 'man',
    });
    expect(await resolveCredentials('docker.io', { env: e })).toEqual({
      username: 'hubuser',
      password: 'hubpass',
    });
  });

  it('fails, without quoting the file, on a credentials file that is not a JSON object', async () => {
    const bad = join(dir, 'bad');
    await mkdir(bad, { recursive: true });
    for (const text of ['{"auths": {"reg.example:5000": {"auth": "c2VjcmV0"}', '[]', 'null']) {
      await writeFile(join(bad, 'config.json'), text);
      const err = await resolveCredentials('reg.example:5000', {
        env: { ...env(), DOCKER_CONFIG: bad },
      }).catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: `credentials file ${join(bad, 'config.json')} is not a JSON object; fix or remove it`,
      });
    }
    // a directory where the file should be cannot be read: IO, naming the path
    await rm(join(bad, 'config.json'));
    await mkdir(join(bad, 'config.json'));
    await expect(
      resolveCredentials('reg.example:5000', { env: { ...env(), DOCKER_CONFIG: bad } }),
    ).rejects.toMatchObject({ code: 'IO', path: join(bad, 'config.json') });
    // no file, an empty one (as docker reads it), or a parent that is a file: nothing stored
    const empty = join(dir, 'empty');
    await mkdir(empty, { recursive: true });
    await writeFile(join(empty, 'config.json'), '\n');
    for (const missing of [join(dir, 'none'), empty, join(dir, 'authfile.json')]) {
      expect(
        await resolveCredentials('reg.example:5000', {
          env: { ...env(), DOCKER_CONFIG: missing },
        }),
      ).toBeUndefined();
    }
  });
});

describe('stored credentials against the CNCF registry with htpasswd', () => {
  let reg: DistributionRegistry;
  let dir: string;
  beforeAll(async () => {
    reg = await startDistributionRegistry({ htpasswd: { username: 'carol', password: 'pw1' } });
    dir = await mkdtemp(join(tmpdir(), 'lading-creds-'));
    await writeFile(
      join(dir, 'config.json'),
      JSON.stringify({ auths: { [reg.host]: { auth: b64('carol:pw1') } } }),
    );
  });
  afterAll(async () => {
    await reg.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('pushes with credentials found in DOCKER_CONFIG and an explicit auth overrides them', async () => {
    const env = { DOCKER_CONFIG: dir };
    const result = await write(
      `${reg.host}/stored/app:1`,
      testImage([layerFromBytes(Buffer.from('x'))]),
      { env },
    ).done;
    expect(result.reference).toContain('stored/app@sha256:');
    const err = await checkPushPermission(`${reg.host}/stored/app:1`, {
      env,
      auth: { username: 'carol', password: 'wrong' },
    }).catch((e: unknown) => (e as { code?: string }).code);
    expect(err).toBe('UNAUTHORIZED');
  });
});
