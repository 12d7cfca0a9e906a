import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createRegistry, type Registry } from '../src/index.js';
import { req, sha256, sleep } from './helpers.js';

let open: Socket[] = [];
let registries: Registry[] = [];

afterEach(async () => {
  for (const s of open) s.destroy();
  open = [];
  await Promise.all(registries.map((r) => r.close()));
  registries = [];
});

async function start(options: Parameters<typeof createRegistry>[0]): Promise<number> {
  const r = createRegistry(options);
  registries.push(r);
  return (await r.listen()).port;
}

/** socket opens a raw connection to 127.0.0.1:port and records when the server closes it. */
function socket(port: number): Promise<{ s: Socket; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    open.push(s);
    s.on('data', () => undefined);
    const t0 = Date.now();
    const closed = new Promise<number>((r) => {
      s.once('close', () => {
        r(Date.now() - t0);
      });
    });
    s.once('error', () => undefined);
    s.once('connect', () => {
      resolve({ s, closed });
    });
    s.once('error', reject);
  });
}

/** trickle writes `chunk` every `ms` until the socket closes or `max` writes went out. */
async function trickle(s: Socket, chunk: string, ms: number, max: number): Promise<void> {
  for (let i = 0; i < max && !s.destroyed; i++) {
    s.write(chunk);
    await sleep(ms);
  }
}

/** within resolves the promise's value, or 'open' when it is still pending after `ms`. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'open'> {
  return Promise.race([p, sleep(ms).then(() => 'open' as const)]);
}

describe('HTTP limits', () => {
  it('closes header- and body-trickling and silent sockets while legitimate requests still succeed', async () => {
    const port = await start({
      http: { headersTimeout: 1, bodyTimeout: 1, maxConnectionsPerClient: 1000 },
    });
    const post = await req('POST', `http://127.0.0.1:${port}/v2/slow/blobs/uploads/`);
    const location = String(post.headers.location);

    // 100 silent sockets, 100 trickling headers, 100 trickling an upload body.
    const silent = await Promise.all(Array.from({ length: 100 }, () => socket(port)));
    const headers = await Promise.all(Array.from({ length: 100 }, () => socket(port)));
    const bodies = await Promise.all(Array.from({ length: 100 }, () => socket(port)));
    for (const { s } of headers) {
      s.write('GET /v2/ HTTP/1.1\r\n');
      void trickle(s, 'X-a: b\r\n', 200, 50);
    }
    for (const { s } of bodies) {
      s.write(
        `PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n` +
          'Content-Length: 100000\r\n\r\n',
      );
      void trickle(s, 'xxxxxxxxxx', 200, 50);
    }

    // Hundreds of hostile sockets are open: an honest client is still served.
    // (No latency bound: on a loaded machine this process may wait for a core.)
    for (let i = 0; i < 5; i++) {
      const ping = await req('GET', `http://127.0.0.1:${port}/v2/`);
      expect(ping.status).toBe(200);
      await sleep(100);
    }

    const all = [...silent, ...headers, ...bodies];
    // Closed after about 1-2 s; the margin is for a loaded machine (without limits they never close).
    const closedAfter = await Promise.all(all.map(({ closed }) => within(closed, 15_000)));
    expect(closedAfter.filter((v) => v === 'open')).toEqual([]);
  }, 60_000);

  it('does not cap a large upload that keeps flowing past requestTimeout, but does cap a slow manifest PUT', async () => {
    const port = await start({
      http: { requestTimeout: 1, bodyTimeout: 1, headersTimeout: 1 },
    });
    const base = `http://127.0.0.1:${port}`;
    const post = await req('POST', `${base}/v2/big/blobs/uploads/`);
    const chunk = Buffer.alloc(64 * 1024, 7);
    const count = 25; // 25 × 100 ms: 2.5 s, past the 1 s request timeout
    const data = Buffer.concat(Array.from({ length: count }, () => chunk));
    const { s, closed } = await socket(port);
    let reply = '';
    s.on('data', (d: Buffer) => (reply += d.toString()));
    const u = new URL(String(post.headers.location), base);
    u.searchParams.set('digest', sha256(data));
    s.write(
      `PUT ${u.pathname}${u.search} HTTP/1.1\r\nHost: x\r\nContent-Length: ${data.length}\r\n\r\n`,
    );
    for (let i = 0; i < count; i++) {
      s.write(chunk);
      await sleep(100);
    }
    for (let i = 0; i < 50 && !reply.includes('\r\n\r\n'); i++) await sleep(50);
    expect(reply).toMatch(/^HTTP\/1\.1 201/);
    s.end();
    await closed;

    // A manifest PUT is not an upload: it must arrive within requestTimeout.
    const m = await socket(port);
    m.s.write(
      'PUT /v2/big/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n' +
        'Content-Length: 100000\r\n\r\n',
    );
    void trickle(m.s, 'x'.repeat(2048), 100, 40); // fast enough for bodyTimeout, too slow in total
    const ms = await within(m.closed, 10_000);
    expect(ms).not.toBe('open');
    expect(ms).toBeGreaterThanOrEqual(900);

    // Nor is one whose query string mentions /blobs/uploads/: the path decides.
    const q = await socket(port);
    q.s.write(
      'PUT /v2/big/manifests/v2?x=/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n' +
        'Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 100000\r\n\r\n',
    );
    void trickle(q.s, 'x'.repeat(512), 100, 100); // 10 s, never slow enough for bodyTimeout
    const qms = await within(q.closed, 5_000);
    expect(qms).not.toBe('open');
    expect(qms).toBeGreaterThanOrEqual(900);
  });

  it('refuses connections past maxConnectionsPerClient and maxConnections, and frees the slots', async () => {
    const port = await start({ http: { maxConnectionsPerClient: 5 } });
    const five = await Promise.all(Array.from({ length: 5 }, () => socket(port)));
    const sixth = await socket(port);
    expect(await within(sixth.closed, 10_000)).not.toBe('open');
    for (const { s } of five) expect(s.destroyed).toBe(false);
    five[0]?.s.destroy();
    await five[0]?.closed;
    await sleep(50);
    expect((await req('GET', `http://127.0.0.1:${port}/v2/`)).status).toBe(200);

    const capped = await start({ http: { maxConnections: 3 } });
    await Promise.all(Array.from({ length: 3 }, () => socket(capped)));
    const fourth = await socket(capped);
    expect(await within(fourth.closed, 10_000)).not.toBe('open');
  });

  it('closes idle keep-alive connections after keepAliveTimeout', async () => {
    const port = await start({ http: { keepAliveTimeout: 0.5 } });
    const { s, closed } = await socket(port);
    let reply = '';
    s.on('data', (d: Buffer) => (reply += d.toString()));
    s.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n');
    const ms = await within(closed, 10_000);
    expect(reply).toMatch(/^HTTP\/1\.1 200/);
    expect(ms).not.toBe('open');
    expect(ms).toBeLessThan(4000); // Node's own default would be 5 s
  });

  it('rejects limits that are not numbers ≥ 0', () => {
    expect(() => createRegistry({ http: { headersTimeout: -1 } })).toThrow(RangeError);
    expect(() => createRegistry({ http: { maxConnections: 1.5 } })).toThrow(RangeError);
  });
});
