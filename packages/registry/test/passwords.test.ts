import { monitorEventLoopDelay } from 'node:perf_hooks';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basicAuth as basic } from '@lading/testing';
import { createRegistry, type Registry, type RegistryOptions } from '../src/index.js';
import { req } from './helpers.js';

// Cost 10, what htpasswd -B uses by default: each check is ~50-100 ms of CPU.
const htpasswd = `alice:${bcrypt.hashSync('wonderland', 10)}\nbob:${bcrypt.hashSync('builder', 10)}`;

const registries: Registry[] = [];
afterAll(async () => {
  await Promise.all(registries.map((r) => r.close()));
});

async function start(options: RegistryOptions): Promise<string> {
  const r = createRegistry(options);
  registries.push(r);
  return (await r.listen()).url;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

describe('password checks', () => {
  let url = '';
  beforeAll(async () => {
    url = await start({ auth: { type: 'basic', htpasswd }, authFailureLimit: false });
  });

  it('costs as much for an unknown user as for a known one with a wrong password', async () => {
    const time = async (user: string): Promise<number> => {
      const t0 = performance.now();
      const r = await req('GET', `${url}/v2/`, { headers: basic(user, 'wrong') });
      expect(r.status).toBe(401);
      return performance.now() - t0;
    };
    await time('alice'); // start the worker
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 5; i++) {
      known.push(await time('alice'));
      unknown.push(await time('nobody'));
    }
    const k = median(known);
    const u = median(unknown);
    expect(k).toBeGreaterThan(20);
    expect(u).toBeGreaterThan(k * 0.5);
    expect(u).toBeLessThan(k * 2);
  });

  it('keeps the event loop free while 24 wrong passwords are checked', async () => {
    // alice's correct credentials are verified once and remembered.
    expect((await req('GET', `${url}/v2/`, { headers: basic('alice', 'wonderland') })).status).toBe(
      200,
    );
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const t0 = performance.now();
    const attempts = Array.from({ length: 24 }, (_, i) =>
      req('GET', `${url}/v2/`, { headers: basic('bob', `guess-${i}`) }),
    );
    await new Promise((r) => setTimeout(r, 100));
    const t1 = performance.now();
    const ping = await req('GET', `${url}/v2/`, { headers: basic('alice', 'wonderland') });
    const pingMs = performance.now() - t1;
    const statuses = (await Promise.all(attempts)).map((r) => r.status);
    const totalMs = performance.now() - t0;
    delay.disable();
    expect(ping.status).toBe(200);
    expect(statuses.every((s) => s === 401)).toBe(true);
    // On the event loop the ping would wait for all 24 checks, and the loop
    // would stall that long; relative bounds keep this true on a loaded machine.
    expect(totalMs).toBeGreaterThan(500);
    expect(pingMs).toBeLessThan(totalMs / 4);
    expect(delay.max / 1e6).toBeLessThan(totalMs / 4);
  }, 60_000);
});

describe('failed-login limit', () => {
  it('answers 429 with Retry-After after repeated failures, for /v2/ and /token', async () => {
    const users = `carol:${bcrypt.hashSync('secret', 4)}`;
    const url = await start({
      auth: { type: 'basic', htpasswd: users },
      authFailureLimit: { count: 3, perSeconds: 60 },
    });
    // Verified before the attack: still accepted afterwards.
    expect((await req('GET', `${url}/v2/`, { headers: basic('carol', 'secret') })).status).toBe(
      200,
    );
    for (let i = 0; i < 3; i++) {
      expect((await req('GET', `${url}/v2/`, { headers: basic('carol', `x${i}`) })).status).toBe(
        401,
      );
    }
    const limited = await req('GET', `${url}/v2/`, { headers: basic('carol', 'x3') });
    expect(limited.status).toBe(429);
    expect(limited.code()).toBe('TOOMANYREQUESTS');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect((await req('GET', `${url}/v2/`, { headers: basic('carol', 'secret') })).status).toBe(
      200,
    );

    const token = await start({
      auth: { type: 'token', users },
      authFailureLimit: { count: 2, perSeconds: 60 },
    });
    const form = (password: string): Promise<{ status: number }> =>
      req('POST', `${token}/token`, {
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: `grant_type=password&username=carol&password=${password}&service=lading-registry`,
      });
    expect((await form('a')).status).toBe(400);
    expect((await form('b')).status).toBe(400);
    expect((await form('c')).status).toBe(429);
    const get = await req('GET', `${token}/token?service=lading-registry`, {
      headers: basic('carol', 'd'),
    });
    expect(get.status).toBe(429);
  });

  it('limits concurrent attempts too: only `count` of them reach bcrypt', async () => {
    const users = `dave:${bcrypt.hashSync('secret', 4)}`;
    const url = await start({
      auth: { type: 'basic', htpasswd: users },
      authFailureLimit: { count: 5, perSeconds: 60 },
    });
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        req('GET', `${url}/v2/`, { headers: basic('dave', `guess-${i}`) }),
      ),
    );
    const statuses = replies.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 401)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(15);
  });
});

describe('token realm', () => {
  it('derives https from the connection or X-Forwarded-Proto, never downgrading', async () => {
    const url = await start({ auth: { type: 'token', users: htpasswd } });
    const host = new URL(url).host;
    const challenge = async (headers: Record<string, string>): Promise<string> =>
      String((await req('GET', `${url}/v2/`, { headers })).headers['www-authenticate']);
    expect(await challenge({})).toContain(`realm="http://${host}/token"`);
    expect(await challenge({ 'X-Forwarded-Proto': 'https' })).toContain(
      `realm="https://${host}/token"`,
    );
    expect(await challenge({ Forwarded: 'for=1.2.3.4;proto=https' })).toContain(
      `realm="https://${host}/token"`,
    );
    expect(await challenge({ 'X-Forwarded-Proto': 'http' })).toContain(`realm="http://`);
  });

  it('uses a configured realm and refuses one that is not an absolute http(s) URL', async () => {
    const url = await start({
      auth: { type: 'token', users: htpasswd, realm: 'https://auth.example.test/token' },
    });
    const r = await req('GET', `${url}/v2/`);
    expect(String(r.headers['www-authenticate'])).toContain(
      'realm="https://auth.example.test/token"',
    );
    for (const realm of ['/token', 'ftp://x/token', 'not a url']) {
      expect(() => createRegistry({ auth: { type: 'token', users: htpasswd, realm } })).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
    }
  });
});
