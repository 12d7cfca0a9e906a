import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, filesystemStorage, memoryStorage, type Registry } from '../src/index.js';
import { req, sha256 } from './helpers.js';

let registry: Registry;
let base: string;
let port: number;

beforeAll(async () => {
  registry = createRegistry({ storage: memoryStorage() });
  ({ url: base, port } = await registry.listen());
});
afterAll(async () => {
  await registry.close();
});

/** raw writes `head` + `body` on a socket, half-closes it and returns what came back. */
function raw(head: string, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {
      resolve(Buffer.concat(chunks).toString());
    });
    socket.on('close', () => {
      resolve(Buffer.concat(chunks).toString());
    });
    socket.on('connect', () => {
      socket.write(head + body);
      socket.end();
    });
    socket.setTimeout(5000, () => {
      socket.destroy();
      reject(new Error('timeout'));
    });
  });
}

describe('hostile input', () => {
  it('never creates a blob from a body shorter than its Content-Length', async () => {
    const data = 'x'.repeat(100);
    const digest = sha256(data);
    const reply = await raw(
      `POST /v2/short/blobs/uploads/?digest=${digest} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n`,
      data.slice(0, 50),
    );
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    expect((await req('HEAD', `${base}/v2/short/blobs/${digest}`)).status).toBe(404);

    const post = await req('POST', `${base}/v2/short/blobs/uploads/`);
    const reply2 = await raw(
      `PUT ${String(post.headers.location)}?digest=${digest} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n`,
      data.slice(0, 50),
    );
    expect(reply2).toMatch(/^HTTP\/1\.1 400/);
    expect((await req('HEAD', `${base}/v2/short/blobs/${digest}`)).status).toBe(404);
  });

  it('answers SIZE_INVALID when Content-Length and Content-Range disagree', async () => {
    const post = await req('POST', `${base}/v2/sizes/blobs/uploads/`);
    const loc = `${base}${String(post.headers.location)}`;
    const r = await req('PATCH', loc, { body: 'abcde', headers: { 'Content-Range': '0-9' } });
    expect(r.status).toBe(400);
    expect(r.code()).toBe('SIZE_INVALID');
    const status = await req('GET', loc);
    expect(status.headers.range).toBe('0-0');
  });

  it('answers SIZE_INVALID when a chunked body is shorter or longer than its Content-Range', async () => {
    const post = await req('POST', `${base}/v2/sizes2/blobs/uploads/`);
    const loc = `${base}${String(post.headers.location)}`;
    const short = await req('PATCH', loc, {
      body: Readable.from([Buffer.from('abc')]),
      headers: { 'Content-Range': '0-9' },
    });
    expect(short.status).toBe(400);
    expect(short.code()).toBe('SIZE_INVALID');
    // The store took the short body: the answer says what the session holds now.
    expect(short.headers.range).toBe('0-2');
    expect(short.json()).toMatchObject({ errors: [{ detail: { kept: 3 } }] });
    expect((await req('GET', loc)).headers.range).toBe('0-2');
    const post2 = await req('POST', `${base}/v2/sizes2/blobs/uploads/`);
    const long = await req('PATCH', `${base}${String(post2.headers.location)}`, {
      body: Readable.from([Buffer.from('0123456789abcdef')]),
      headers: { 'Content-Range': '0-9' },
    });
    expect(long.status).toBe(400);
    expect(long.code()).toBe('SIZE_INVALID');
  });

  it('changes nothing when a closing PUT has a Content-Length that contradicts its Content-Range', async () => {
    const post = await req('POST', `${base}/v2/sizes3/blobs/uploads/`);
    const loc = `${base}${String(post.headers.location)}`;
    expect((await req('PATCH', loc, { body: 'hello' })).headers.range).toBe('0-4');
    const put = await req('PUT', `${loc}?digest=${sha256('helloworld')}`, {
      body: 'world',
      headers: { 'Content-Range': '5-14' },
    });
    expect(put.status).toBe(400);
    expect(put.code()).toBe('SIZE_INVALID');
    expect((await req('GET', loc)).headers.range).toBe('0-4');
    const done = await req('PUT', `${loc}?digest=${sha256('helloworld')}`, {
      body: 'world',
      headers: { 'Content-Range': '5-9' },
    });
    expect(done.status).toBe(201);
  });

  it('stores an empty blob from a single POST with Content-Length: 0', async () => {
    const digest = sha256('');
    const post = await req('POST', `${base}/v2/empty/blobs/uploads/?digest=${digest}`, {
      body: '',
    });
    expect(post.status).toBe(201);
    expect(post.headers['docker-content-digest']).toBe(digest);
    const head = await req('HEAD', `${base}/v2/empty/blobs/${digest}`);
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('0');
  });

  it('answers BLOB_UPLOAD_INVALID for a malformed Content-Range', async () => {
    const post = await req('POST', `${base}/v2/badrange/blobs/uploads/`);
    const r = await req('PATCH', `${base}${String(post.headers.location)}`, {
      body: 'abc',
      headers: { 'Content-Range': 'nonsense' },
    });
    expect(r.status).toBe(400);
    expect(r.code()).toBe('BLOB_UPLOAD_INVALID');
    const digest = `sha256:${createHash('sha256').update('abc').digest('hex')}`;
    const put = await req('PUT', `${base}${String(post.headers.location)}?digest=${digest}`, {
      body: 'abc',
      headers: { 'Content-Range': 'nonsense' },
    });
    expect(put.status).toBe(400);
    expect(put.code()).toBe('BLOB_UPLOAD_INVALID');
  });

  it('rejects bad digests wherever they appear', async () => {
    expect(
      (await req('POST', `${base}/v2/d/blobs/uploads/?mount=sha256:short&from=x`)).code(),
    ).toBe('DIGEST_INVALID');
    const post = await req('POST', `${base}/v2/d/blobs/uploads/`);
    const noDigest = await req('PUT', `${base}${String(post.headers.location)}`, { body: 'x' });
    expect(noDigest.status).toBe(400);
    expect(noDigest.code()).toBe('DIGEST_INVALID');
    expect((await req('GET', `${base}/v2/d/manifests/sha256:ABC`)).code()).toBe('DIGEST_INVALID');
    expect((await req('POST', `${base}/v2/d/blobs/uploads/?digest-algorithm=md5`)).code()).toBe(
      'DIGEST_INVALID',
    );
  });

  it('verifies sha512 uploads', async () => {
    const data = 'sha512 content';
    const digest = `sha512:${createHash('sha512').update(data).digest('hex')}`;
    const post = await req('POST', `${base}/v2/sha512/blobs/uploads/?digest-algorithm=sha512`);
    await req('PATCH', `${base}${String(post.headers.location)}`, { body: data });
    const put = await req('PUT', `${base}${String(post.headers.location)}?digest=${digest}`);
    expect(put.status).toBe(201);
    expect((await req('GET', `${base}/v2/sha512/blobs/${digest}`)).text).toBe(data);
  });

  it('answers 404 for unknown endpoints and 405 for wrong methods', async () => {
    expect((await req('GET', `${base}/v1/`)).status).toBe(404);
    expect((await req('GET', `${base}/v2/repo/unknown/thing`)).status).toBe(404);
    const r = await req('POST', `${base}/v2/repo/manifests/latest`);
    expect(r.status).toBe(405);
    expect(r.code()).toBe('UNSUPPORTED');
  });

  it('refuses a second writer on a busy upload session', async () => {
    const post = await req('POST', `${base}/v2/busy/blobs/uploads/`);
    const loc = `${base}${String(post.headers.location)}`;
    const body = new PassThrough();
    const first = req('PATCH', loc, { body });
    body.write('first bytes');
    // Wait until the server has taken the first chunk.
    for (;;) {
      const s = await req('GET', loc);
      if (s.headers.range !== '0-0') break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const second = await req('PATCH', loc, { body: 'intruder' });
    expect(second.status).toBe(400);
    expect(second.code()).toBe('BLOB_UPLOAD_INVALID');
    body.end(' and the rest');
    const done = await first;
    expect(done.status).toBe(202);
    const put = await req('PUT', `${loc}?digest=${sha256('first bytes and the rest')}`);
    expect(put.status).toBe(201);
  });

  it('cancels on DELETE a session that a request is still writing', async () => {
    // A client cut off mid-PATCH (Ctrl-C) sends DELETE while the registry
    // is still reading what it sent: the DELETE stops that request.
    for (const method of ['PATCH', 'PUT'] as const) {
      const post = await req('POST', `${base}/v2/cut/blobs/uploads/`);
      const loc = `${base}${String(post.headers.location)}`;
      const body = new PassThrough();
      const url = method === 'PUT' ? `${loc}?digest=${sha256('never all of it')}` : loc;
      const writing = req(method, url, { body }).then(
        (r) => r.status,
        () => 'cut',
      );
      body.write('some bytes');
      for (;;) {
        const s = await req('GET', loc);
        if (s.headers.range !== '0-0') break;
        await new Promise((r) => setTimeout(r, 10));
      }
      const del = await req('DELETE', loc);
      expect(del.status).toBe(204);
      expect(await writing).toBe('cut');
      const after = await req('GET', loc);
      expect(after.status).toBe(404);
      expect(after.code()).toBe('BLOB_UPLOAD_UNKNOWN');
      body.destroy();
    }
  });
});

describe('store failures', () => {
  let dir: string;
  let broken: Registry;
  let brokenBase: string;
  const logged: unknown[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lading-broken-'));
    broken = createRegistry({
      storage: filesystemStorage(dir),
      onError: (err) => logged.push(err),
    });
    ({ url: brokenBase } = await broken.listen());
  });
  afterAll(async () => {
    await broken.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers 500 UNKNOWN without store details when the store fails after the body was read', async () => {
    const post = await req('POST', `${brokenBase}/v2/b/blobs/uploads/`);
    expect(post.status).toBe(202);
    // From now on the store cannot create sessions nor write metadata.
    rmSync(join(dir, 'uploads'), { recursive: true, force: true });
    writeFileSync(join(dir, 'uploads'), 'not a directory');
    rmSync(join(dir, 'tmp'), { recursive: true, force: true });
    writeFileSync(join(dir, 'tmp'), 'not a directory');
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [],
    });
    const replies = await Promise.all([
      req('POST', `${brokenBase}/v2/b/blobs/uploads/`),
      req('POST', `${brokenBase}/v2/b/blobs/uploads/`, { body: 'x'.repeat(1000) }),
      req('PUT', `${brokenBase}/v2/b/manifests/t`, {
        body: manifest,
        headers: { 'Content-Type': 'application/vnd.oci.image.index.v1+json' },
      }),
    ]);
    for (const r of replies) {
      expect(r.status).toBe(500);
      expect(r.code()).toBe('UNKNOWN');
      expect(r.text).not.toContain(dir);
    }
    // The details went to onError.
    expect(logged.map(String).join('\n')).toContain(dir);
  }, 15_000);

  it('keeps store details out of a 400 for a chunk the store failed on', async () => {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    const post = await req('POST', `${brokenBase}/v2/c/blobs/uploads/`);
    const id = String(post.headers['docker-upload-uuid']);
    // The session's data file becomes a directory: appending to it fails.
    const data = join(dir, 'uploads', id, 'data');
    rmSync(data);
    mkdirSync(data);
    const patch = await req('PATCH', `${brokenBase}${String(post.headers.location)}`, {
      body: 'abc',
    });
    expect(patch.status).toBe(400);
    expect(patch.code()).toBe('BLOB_UPLOAD_INVALID');
    expect(patch.text).not.toContain(dir);
    expect(patch.text).not.toContain('EISDIR');
    expect(logged.map(String).join('\n')).toContain('EISDIR');
  });
});

describe('concurrency and size', () => {
  it('accepts two concurrent uploads of the same blob and stores it intact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lading-dup-'));
    const r = createRegistry({ storage: filesystemStorage(dir) });
    const { url } = await r.listen();
    try {
      const data = Buffer.alloc(4 * 1024 * 1024);
      for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) % 251;
      const digest = sha256(data);
      const upload = async (): Promise<number> => {
        const post = await req('POST', `${url}/v2/dup/blobs/uploads/`);
        const chunks = Array.from({ length: 16 }, (_, i) =>
          data.subarray(i * 262144, (i + 1) * 262144),
        );
        const patch = await req('PATCH', `${url}${String(post.headers.location)}`, {
          body: Readable.from(chunks),
        });
        expect(patch.status).toBe(202);
        return (await req('PUT', `${url}${String(patch.headers.location)}?digest=${digest}`))
          .status;
      };
      expect(await Promise.all([upload(), upload(), upload()])).toEqual([201, 201, 201]);
      const got = await req('GET', `${url}/v2/dup/blobs/${digest}`);
      expect(sha256(got.body)).toBe(digest);
    } finally {
      await r.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('streams a 256 MiB blob to disk without holding it in memory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lading-big-'));
    const r = createRegistry({ storage: filesystemStorage(dir) });
    const { url } = await r.listen();
    try {
      const block = Buffer.alloc(1024 * 1024, 0x5a);
      const total = 256;
      const hash = createHash('sha256');
      for (let i = 0; i < total; i++) hash.update(block);
      const digest = `sha256:${hash.digest('hex')}`;
      const post = await req('POST', `${url}/v2/big/blobs/uploads/`);
      const before = process.memoryUsage().rss;
      let peak = before;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 20);
      let sent = 0;
      const source = new Readable({
        read() {
          this.push(sent++ < total ? block : null);
        },
      });
      const status = await new Promise<number>((resolve, reject) => {
        const u = new URL(`${url}${String(post.headers.location)}`);
        const rq = httpRequest(
          { method: 'PATCH', host: u.hostname, port: u.port, path: u.pathname, agent: false },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        rq.on('error', reject);
        source.pipe(rq);
      });
      clearInterval(sampler);
      expect(status).toBe(202);
      const put = await req('PUT', `${url}${String(post.headers.location)}?digest=${digest}`);
      expect(put.status).toBe(201);
      const head = await req('HEAD', `${url}/v2/big/blobs/${digest}`);
      expect(head.headers['content-length']).toBe(String(total * 1024 * 1024));
      const growthMiB = (peak - before) / 1024 / 1024;
      console.log(`RSS growth while streaming 256 MiB: ${growthMiB.toFixed(1)} MiB`);
      expect(growthMiB).toBeLessThan(128);
    } finally {
      await r.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
