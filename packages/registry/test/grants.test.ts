import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createRegistry,
  grantsFromFile,
  parseGrants,
  type GrantFunction,
  type Registry,
} from '../src/index.js';
import { globPattern } from '../src/grants.js';
import { pushImage, req } from './helpers.js';

const grantsDoc = JSON.stringify({
  grants: [
    { users: ['alice'], repositories: ['team/*'], actions: ['pull', 'push'] },
    { users: 'alice', repositories: 'team/scratch', actions: 'delete' },
    { users: '*', repositories: 'public/**', actions: ['pull'] },
    { users: 'admin', repositories: '**', actions: '*' },
    { users: 'anonymous', repositories: 'public/open', actions: 'pull' },
  ],
});

const htpasswd = ['alice', 'bob', 'admin']
  .map((u) => `${u}:${bcrypt.hashSync(`${u}-pw`, 4)}`)
  .join('\n');

const basic = (user: string): Record<string, string> => ({
  Authorization: `Basic ${Buffer.from(`${user}:${user}-pw`).toString('base64')}`,
});

describe('parseGrants', () => {
  const grants = parseGrants(grantsDoc);

  it('grants the union of matching rules, nothing else', () => {
    expect(grants('alice', 'team/app')).toEqual(['pull', 'push']);
    expect(grants('alice', 'team/scratch')).toEqual(['pull', 'push', 'delete']);
    expect(grants('alice', 'team/app/nested')).toEqual([]);
    expect(grants('alice', 'public/a/b')).toEqual(['pull']);
    expect(grants('bob', 'team/app')).toEqual([]);
    expect(grants('bob', 'public/x')).toEqual(['pull']);
    expect(grants('admin', 'any/thing')).toEqual(['pull', 'push', 'delete']);
    expect(grants(undefined, 'public/x')).toEqual([]);
    expect(grants(undefined, 'public/open')).toEqual(['pull']);
  });

  it('matches globs per path component with *, across them with **', () => {
    expect(globPattern('a/*').test('a/b')).toBe(true);
    expect(globPattern('a/*').test('a/b/c')).toBe(false);
    expect(globPattern('a/**').test('a/b/c')).toBe(true);
    expect(globPattern('a.b').test('axb')).toBe(false);
  });

  it('refuses malformed documents with INVALID_ARGUMENT', () => {
    for (const text of [
      'nope',
      '{}',
      '{"grants": [1]}',
      '{"grants": [{"users": [], "repositories": ["x"], "actions": ["pull"]}]}',
      '{"grants": [{"users": "a", "repositories": "x", "actions": ["own"]}]}',
    ]) {
      expect(() => parseGrants(text)).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
    }
  });
});

describe('grants in basic mode', () => {
  let registry: Registry;
  let url = '';
  let dir = '';
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lading-grants-'));
    writeFileSync(join(dir, 'grants.json'), grantsDoc);
    registry = createRegistry({
      auth: { type: 'basic', htpasswd, grants: grantsFromFile(join(dir, 'grants.json')) },
    });
    url = (await registry.listen()).url;
    await pushImage(url, 'team/app', 'v1', {}, basic('admin'));
    await pushImage(url, 'team/scratch', 'v1', {}, basic('admin'));
    await pushImage(url, 'public/base', 'v1', {}, basic('admin'));
    await pushImage(url, 'secret/keys', 'v1', {}, basic('admin'));
  });
  afterAll(async () => {
    await registry.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lets each user pull, push and delete only what the rules grant', async () => {
    expect(
      (await req('GET', `${url}/v2/team/app/manifests/v1`, { headers: basic('alice') })).status,
    ).toBe(200);
    expect(
      (await req('GET', `${url}/v2/secret/keys/manifests/v1`, { headers: basic('alice') })).status,
    ).toBe(403);
    expect(
      (await req('POST', `${url}/v2/team/app/blobs/uploads/`, { headers: basic('alice') })).status,
    ).toBe(202);
    expect(
      (await req('POST', `${url}/v2/public/base/blobs/uploads/`, { headers: basic('bob') })).status,
    ).toBe(403);
    const del = await req('DELETE', `${url}/v2/team/app/manifests/v1`, { headers: basic('alice') });
    expect(del.status).toBe(403);
    expect(del.code()).toBe('DENIED');
    expect(
      (await req('DELETE', `${url}/v2/team/scratch/manifests/v1`, { headers: basic('alice') }))
        .status,
    ).toBe(202);
  });

  it('lists in the catalog only the repositories the caller may pull', async () => {
    const catalog = async (user: string): Promise<unknown> =>
      (await req('GET', `${url}/v2/_catalog`, { headers: basic(user) })).json();
    expect(await catalog('alice')).toEqual({
      repositories: ['public/base', 'team/app', 'team/scratch'],
    });
    expect(await catalog('bob')).toEqual({ repositories: ['public/base'] });
    expect(await catalog('admin')).toEqual({
      repositories: ['public/base', 'secret/keys', 'team/app', 'team/scratch'],
    });
    const paged = await req('GET', `${url}/v2/_catalog?n=1`, { headers: basic('bob') });
    expect(paged.json()).toEqual({ repositories: ['public/base'] });
    expect(paged.headers.link).toBeUndefined();
  });
});

describe('grants in token mode', () => {
  let registry: Registry;
  let url = '';
  const grants: GrantFunction = parseGrants(grantsDoc);
  beforeAll(async () => {
    registry = createRegistry({ auth: { type: 'token', users: htpasswd, grants } });
    url = (await registry.listen()).url;
  });
  afterAll(async () => {
    await registry.close();
  });

  async function access(user: string | undefined, scope: string): Promise<unknown> {
    const r = await req(
      'GET',
      `${url}/token?service=lading-registry&scope=${encodeURIComponent(scope)}`,
      {
        headers: user === undefined ? {} : basic(user),
      },
    );
    const token = (r.json() as { token: string }).token;
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as {
      access: unknown;
    };
    return claims.access;
  }

  it('puts in tokens only the actions the rules grant', async () => {
    expect(await access('bob', 'repository:public/x:pull,push,delete')).toEqual([
      { type: 'repository', name: 'public/x', actions: ['pull'] },
    ]);
    expect(await access('alice', 'repository:team/app:*')).toEqual([
      { type: 'repository', name: 'team/app', actions: ['pull', 'push'] },
    ]);
    expect(await access('bob', 'repository:secret/keys:pull')).toEqual([
      { type: 'repository', name: 'secret/keys', actions: [] },
    ]);
    expect(await access(undefined, 'repository:public/open:pull,push')).toEqual([
      { type: 'repository', name: 'public/open', actions: ['pull'] },
    ]);
  });

  it('filters the catalog for a token holder by pull grants', async () => {
    const admin = await req(
      'GET',
      `${url}/token?service=lading-registry&scope=${encodeURIComponent('repository:team/app:push,pull')}`,
      { headers: basic('admin') },
    );
    const adminToken = (admin.json() as { token: string }).token;
    await pushImage(url, 'team/app', 'v1', {}, { Authorization: `Bearer ${adminToken}` });
    const pushPublic = await req(
      'GET',
      `${url}/token?service=lading-registry&scope=${encodeURIComponent('repository:public/p:push,pull')}`,
      { headers: basic('admin') },
    );
    await pushImage(
      url,
      'public/p',
      'v1',
      {},
      {
        Authorization: `Bearer ${(pushPublic.json() as { token: string }).token}`,
      },
    );
    const bobToken = await req(
      'GET',
      `${url}/token?service=lading-registry&scope=registry:catalog:*`,
      { headers: basic('bob') },
    );
    const cat = await req('GET', `${url}/v2/_catalog`, {
      headers: { Authorization: `Bearer ${(bobToken.json() as { token: string }).token}` },
    });
    expect(cat.status).toBe(200);
    expect(cat.json()).toEqual({ repositories: ['public/p'] });
  });
});
