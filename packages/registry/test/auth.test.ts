import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basicAuth as basic } from '@lading/testing';
import { createRegistry, type Registry } from '../src/index.js';
import { pushBlob, req } from './helpers.js';

const htpasswd = [
  `alice:${bcrypt.hashSync('wonderland', 4)}`,
  `bob:${bcrypt.hashSync('builder', 4).replace('$2b$', '$2y$')}`,
  '# comment',
  '',
].join('\n');

const bearer = (token: string): Record<string, string> => ({ Authorization: `Bearer ${token}` });

// bob may only pull; alice may do everything.
const grants = (user: string | undefined): ('pull' | 'push' | 'delete')[] =>
  user === 'alice' ? ['pull', 'push', 'delete'] : user === 'bob' ? ['pull'] : [];

describe('basic auth', () => {
  let registry: Registry;
  let base: string;
  beforeAll(async () => {
    registry = createRegistry({ auth: { type: 'basic', htpasswd, realm: 'test realm', grants } });
    base = (await registry.listen()).url;
  });
  afterAll(async () => {
    await registry.close();
  });

  it('challenges with Basic and answers 401 UNAUTHORIZED without or with wrong credentials', async () => {
    const none = await req('GET', `${base}/v2/`);
    expect(none.status).toBe(401);
    expect(none.code()).toBe('UNAUTHORIZED');
    expect(none.headers['www-authenticate']).toMatch(/^Basic realm="test realm"/);
    const wrong = await req('GET', `${base}/v2/`, { headers: basic('alice', 'nope') });
    expect(wrong.status).toBe(401);
    const unknown = await req('GET', `${base}/v2/`, { headers: basic('mallory', 'x') });
    expect(unknown.status).toBe(401);
  });

  it('accepts $2b$ and $2y$ bcrypt entries and enforces grants with 403 DENIED', async () => {
    expect(
      (await req('GET', `${base}/v2/`, { headers: basic('alice', 'wonderland') })).status,
    ).toBe(200);
    expect((await req('GET', `${base}/v2/`, { headers: basic('bob', 'builder') })).status).toBe(
      200,
    );
    const d = await pushBlob(base, 'team/app', 'secret', basic('alice', 'wonderland'));
    expect(
      (await req('GET', `${base}/v2/team/app/blobs/${d}`, { headers: basic('bob', 'builder') }))
        .text,
    ).toBe('secret');
    const push = await req('POST', `${base}/v2/team/app/blobs/uploads/`, {
      headers: basic('bob', 'builder'),
    });
    expect(push.status).toBe(403);
    expect(push.code()).toBe('DENIED');
    const del = await req('DELETE', `${base}/v2/team/app/blobs/${d}`, {
      headers: basic('bob', 'builder'),
    });
    expect(del.status).toBe(403);
  });
});

describe('token auth', () => {
  let registry: Registry;
  let base: string;
  let host: string;
  beforeAll(async () => {
    registry = createRegistry({
      auth: {
        type: 'token',
        users: htpasswd,
        service: 'test-service',
        issuer: 'test-issuer',
        grants,
        anonymousPull: true,
      },
    });
    const listening = await registry.listen();
    base = listening.url;
    host = `127.0.0.1:${listening.port}`;
  });
  afterAll(async () => {
    await registry.close();
  });

  async function token(scope: string, user?: [string, string]): Promise<string> {
    const r = await req(
      'GET',
      `${base}/token?service=test-service&scope=${encodeURIComponent(scope)}`,
      {
        headers: user === undefined ? {} : basic(...user),
      },
    );
    expect(r.status).toBe(200);
    const body = r.json() as {
      token: string;
      access_token: string;
      expires_in: number;
      issued_at: string;
    };
    expect(body.access_token).toBe(body.token);
    expect(body.expires_in).toBeGreaterThan(0);
    return body.token;
  }

  it('challenges with a Bearer realm, service and scope', async () => {
    const ping = await req('GET', `${base}/v2/`);
    expect(ping.status).toBe(401);
    expect(ping.headers['www-authenticate']).toBe(
      `Bearer realm="http://${host}/token",service="test-service"`,
    );
    const pull = await req('GET', `${base}/v2/team/app/manifests/latest`);
    expect(pull.headers['www-authenticate']).toBe(
      `Bearer realm="http://${host}/token",service="test-service",scope="repository:team/app:pull"`,
    );
    const push = await req('POST', `${base}/v2/team/app/blobs/uploads/`);
    expect(push.status).toBe(401);
    expect(push.code()).toBe('UNAUTHORIZED');
    expect(push.headers['www-authenticate']).toContain('scope="repository:team/app:pull,push"');
  });

  it('issues tokens from GET /token with basic credentials that grant push', async () => {
    const t = await token('repository:team/app:pull,push', ['alice', 'wonderland']);
    expect((await req('GET', `${base}/v2/`, { headers: bearer(t) })).status).toBe(200);
    const d = await pushBlob(base, 'team/app', 'token pushed', bearer(t));
    expect((await req('GET', `${base}/v2/team/app/blobs/${d}`, { headers: bearer(t) })).text).toBe(
      'token pushed',
    );
    // The token is scoped to team/app only.
    const other = await req('POST', `${base}/v2/team/other/blobs/uploads/`, { headers: bearer(t) });
    expect(other.status).toBe(401);
    expect(other.headers['www-authenticate']).toContain('error="insufficient_scope"');
  });

  it('answers insufficient_scope for a pull-only token and DENIED for a user without the grant', async () => {
    const pullOnly = await token('repository:team/app:pull', ['alice', 'wonderland']);
    const r = await req('POST', `${base}/v2/team/app/blobs/uploads/`, {
      headers: bearer(pullOnly),
    });
    expect(r.status).toBe(401);
    expect(r.code()).toBe('UNAUTHORIZED');
    expect(r.headers['www-authenticate']).toBe(
      `Bearer realm="http://${host}/token",service="test-service",scope="repository:team/app:pull,push",error="insufficient_scope"`,
    );
    // bob asked for push but may only pull: the token carries pull only, and he is denied.
    const bobs = await token('repository:team/app:pull,push', ['bob', 'builder']);
    const denied = await req('POST', `${base}/v2/team/app/blobs/uploads/`, {
      headers: bearer(bobs),
    });
    expect(denied.status).toBe(403);
    expect(denied.code()).toBe('DENIED');
  });

  it('lets anonymous clients pull, not push', async () => {
    const alice = await token('repository:public/app:pull,push', ['alice', 'wonderland']);
    const d = await pushBlob(base, 'public/app', 'public bytes', bearer(alice));
    const anon = await token('repository:public/app:pull,push');
    expect(
      (await req('GET', `${base}/v2/public/app/blobs/${d}`, { headers: bearer(anon) })).text,
    ).toBe('public bytes');
    const push = await req('POST', `${base}/v2/public/app/blobs/uploads/`, {
      headers: bearer(anon),
    });
    expect(push.status).toBe(401);
    expect(push.headers['www-authenticate']).toContain('insufficient_scope');
  });

  it('rejects wrong credentials on the token endpoint and tampered tokens', async () => {
    const bad = await req(
      'GET',
      `${base}/token?service=test-service&scope=repository:team/app:pull`,
      {
        headers: basic('alice', 'wrong'),
      },
    );
    expect(bad.status).toBe(401);
    const t = await token('repository:team/app:pull,push', ['alice', 'wonderland']);
    const [h, p] = t.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as {
      access: { actions: string[] }[];
    };
    claims.access[0]!.actions.push('delete');
    const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${t.split('.')[2]}`;
    const r = await req('GET', `${base}/v2/`, { headers: bearer(forged) });
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toContain('error="invalid_token"');
  });

  it('serves OAuth2 POST /token with password and refresh_token grants', async () => {
    const form = (fields: Record<string, string>) => ({
      body: new URLSearchParams(fields).toString(),
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    const first = await req(
      'POST',
      `${base}/token`,
      form({
        grant_type: 'password',
        username: 'alice',
        password: 'wonderland',
        service: 'test-service',
        scope: 'repository:oauth/app:pull,push',
        client_id: 'test',
      }),
    );
    expect(first.status).toBe(200);
    const body = first.json() as {
      access_token: string;
      refresh_token: string;
      token_type: string;
      scope: string;
    };
    expect(body.token_type).toBe('Bearer');
    expect(body.scope).toBe('repository:oauth/app:pull,push');
    expect(
      (
        await req('POST', `${base}/v2/oauth/app/blobs/uploads/`, {
          headers: bearer(body.access_token),
        })
      ).status,
    ).toBe(202);
    // A refresh token is not an access token.
    expect((await req('GET', `${base}/v2/`, { headers: bearer(body.refresh_token) })).status).toBe(
      401,
    );
    const refreshed = await req(
      'POST',
      `${base}/token`,
      form({
        grant_type: 'refresh_token',
        refresh_token: body.refresh_token,
        service: 'test-service',
        scope: 'repository:oauth/app:pull',
      }),
    );
    expect(refreshed.status).toBe(200);
    const again = refreshed.json() as { access_token: string };
    expect(
      (await req('GET', `${base}/v2/oauth/app/tags/list`, { headers: bearer(again.access_token) }))
        .status,
    ).toBe(404);
    const wrong = await req(
      'POST',
      `${base}/token`,
      form({ grant_type: 'password', username: 'alice', password: 'x' }),
    );
    expect(wrong.status).toBe(400);
    expect((wrong.json() as { error: string }).error).toBe('invalid_grant');
    const unsupported = await req(
      'POST',
      `${base}/token`,
      form({ grant_type: 'client_credentials' }),
    );
    expect((unsupported.json() as { error: string }).error).toBe('unsupported_grant_type');
  });

  it('needs registry:catalog:* for the catalog and refuses it to anonymous tokens', async () => {
    const anon = await token('registry:catalog:*');
    expect((await req('GET', `${base}/v2/_catalog`, { headers: bearer(anon) })).status).toBe(401);
    const t = await token('registry:catalog:*', ['alice', 'wonderland']);
    const r = await req('GET', `${base}/v2/_catalog`, { headers: bearer(t) });
    expect(r.status).toBe(200);
    expect((r.json() as { repositories: string[] }).repositories).toContain('team/app');
  });

  it('mounts only from repositories the token may pull; otherwise opens a session', async () => {
    const alice = await token('repository:mount/src:pull,push', ['alice', 'wonderland']);
    const d = await pushBlob(base, 'mount/src', 'mount me', bearer(alice));
    const dst = await token('repository:mount/dst:pull,push', ['alice', 'wonderland']);
    const noPull = await req(
      'POST',
      `${base}/v2/mount/dst/blobs/uploads/?mount=${d}&from=mount/src`,
      { headers: bearer(dst) },
    );
    expect(noPull.status).toBe(202);
    const both = await req(
      'GET',
      `${base}/token?service=test-service&scope=repository:mount/dst:pull,push&scope=repository:mount/src:pull`,
      { headers: basic('alice', 'wonderland') },
    );
    const t = (both.json() as { token: string }).token;
    const mounted = await req(
      'POST',
      `${base}/v2/mount/dst/blobs/uploads/?mount=${d}&from=mount/src`,
      { headers: bearer(t) },
    );
    expect(mounted.status).toBe(201);
  });
});
