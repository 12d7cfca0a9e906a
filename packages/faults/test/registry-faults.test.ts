import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { appendLayers, emptyImage, layerFromBytes, validateImage } from '@lading/core';
import { createRegistry, filesystemStorage, type Registry } from '@lading/registry';
import { pullImage, write } from '@lading/remote';
import { freePort } from '@lading/testing';

const registryDist = fileURLToPath(new URL('../../registry/dist/index.js', import.meta.url));

async function startChild(dir: string, port: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { createRegistry, filesystemStorage } from ${JSON.stringify(registryDist)};
       await createRegistry({ storage: filesystemStorage(${JSON.stringify(dir)}) }).listen({ host: '127.0.0.1', port: ${port} });
       console.log('ready');`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (c: Buffer) => {
      if (c.toString().includes('ready')) resolve();
    });
    child.on('exit', (code) => {
      reject(new Error(`registry exited with ${String(code)}`));
    });
  });
  return child;
}

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

describe('registry killed mid-upload (filesystem storage)', () => {
  it('shows no partial blob after a restart and accepts the upload again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lading-kill-'));
    // Also when the registry fails to start, before the try below.
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const blob = randomBytes(4 * 1024 * 1024);
    const digest = sha256(blob);
    let child = await startChild(dir, port);
    try {
      const post = await fetch(`${base}/v2/kill/me/blobs/uploads/`, { method: 'POST' });
      expect(post.status).toBe(202);
      const location = new URL(post.headers.get('location') ?? '', base);
      // Stream half the blob, then kill the registry while the PATCH is open.
      const patch = httpRequest(location, {
        method: 'PATCH',
        headers: { 'content-type': 'application/octet-stream' },
      });
      patch.on('error', () => undefined);
      patch.write(blob.subarray(0, blob.length / 2));
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      patch.destroy();

      child = await startChild(dir, port);
      expect((await fetch(`${base}/v2/kill/me/blobs/${digest}`, { method: 'HEAD' })).status).toBe(
        404,
      );
      expect((await fetch(`${base}/v2/kill/me/blobs/${digest}`)).status).toBe(404);
      const again = await fetch(`${base}/v2/kill/me/blobs/uploads/?digest=${digest}`, {
        method: 'POST',
        body: blob,
      });
      expect(again.status).toBe(201);
      const got = Buffer.from(
        await (await fetch(`${base}/v2/kill/me/blobs/${digest}`)).arrayBuffer(),
      );
      expect(sha256(got)).toBe(digest);
    } finally {
      child.kill('SIGKILL');
    }
  }, 60_000);
});

describe('registry under load and hostile requests', () => {
  let registry: Registry;
  let host: string;
  let base: string;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lading-load-'));
    registry = createRegistry({ storage: filesystemStorage(dir) });
    base = (await registry.listen({ host: '127.0.0.1', port: 0 })).url;
    host = new URL(base).host;
  });
  afterAll(async () => {
    await registry.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('takes 200 overlapping pushes, 20 at a time, and serves every manifest valid afterwards', async () => {
    const shared = randomBytes(256 * 1024);
    const images = Array.from({ length: 200 }, (_, i) =>
      appendLayers(
        emptyImage(),
        layerFromBytes(shared),
        layerFromBytes(Buffer.from(`image ${i % 50}`.repeat(100))),
      ),
    );
    const digests: string[] = [];
    for (let i = 0; i < images.length; i += 20) {
      const batch = images
        .slice(i, i + 20)
        .map((img, j) => write(`${host}/load/app${(i + j) % 7}:t${i + j}`, img).done);
      for (const r of await Promise.all(batch)) digests.push(r.digest);
    }
    expect(digests).toHaveLength(200);
    for (let i = 0; i < 200; i += 1) {
      const img = await pullImage(`${host}/load/app${i % 7}:t${i}`);
      expect(await img.digest()).toBe(digests[i]);
      if (i % 10 === 0) await validateImage(img);
    }
  }, 120_000);

  it('answers hostile requests with spec errors and keeps serving what it had', async () => {
    const before = await write(
      `${host}/hostile/ok:v1`,
      appendLayers(emptyImage(), layerFromBytes(Buffer.from('keep me'))),
    ).done;
    const put = (
      path: string,
      body: string | Buffer,
      type = 'application/vnd.oci.image.manifest.v1+json',
    ) => fetch(`${base}${path}`, { method: 'PUT', headers: { 'content-type': type }, body });
    const code = async (r: Response): Promise<string | undefined> =>
      ((await r.json().catch(() => ({}))) as { errors?: { code: string }[] }).errors?.[0]?.code;

    const malformed = await put('/v2/hostile/ok/manifests/bad', '{"schemaVersion": 2, "layers": [');
    expect(malformed.status).toBe(400);
    expect(await code(malformed)).toBe('MANIFEST_INVALID');

    const huge = await put('/v2/hostile/ok/manifests/huge', Buffer.alloc(5 * 1024 * 1024, 0x20));
    expect([400, 413]).toContain(huge.status);

    const badDigest = await fetch(`${base}/v2/hostile/ok/blobs/sha256:zzzz`);
    expect([400, 404]).toContain(badDigest.status);

    for (const path of [
      '/v2/../etc/tags/list',
      '/v2/%2e%2e/x/tags/list',
      '/v2/hostile/%2E%2E/ok/tags/list',
      '/v2/Hostile/Up/tags/list',
    ]) {
      const r = await fetch(`${base}${path}`);
      expect(r.status, path).toBeGreaterThanOrEqual(400);
      expect(r.status, path).toBeLessThan(500);
    }

    const post = await fetch(`${base}/v2/hostile/ok/blobs/uploads/`, { method: 'POST' });
    const location = new URL(post.headers.get('location') ?? '', base);
    const first = await fetch(location, {
      method: 'PATCH',
      headers: { 'content-range': '0-3' },
      body: 'abcd',
    });
    expect(first.status).toBe(202);
    const next = new URL(first.headers.get('location') ?? '', base);
    const outOfOrder = await fetch(next, {
      method: 'PATCH',
      headers: { 'content-range': '10-13' },
      body: 'wxyz',
    });
    expect(outOfOrder.status).toBe(416);

    // Everything pushed before is intact.
    await validateImage(await pullImage(`${host}/hostile/ok:v1`));
    expect(await pullImage(`${host}/hostile/ok:v1`).then((i) => i.digest())).toBe(before.digest);
  });
});
