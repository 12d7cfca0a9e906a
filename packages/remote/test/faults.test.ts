import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ProgressEmitter,
  copy,
  digestOf,
  isLadingError,
  layerFromBytes,
  memoryTarget,
  writeImage,
  type ProgressEvent,
} from '@lading/core';
import {
  MAX_CHUNK_SIZE,
  RegistryClient,
  RegistryError,
  pullImage,
  registryTarget,
  write,
} from '../src/index.js';
import { FakeRegistry } from './fake-registry.js';
import { CountingSource, TestStreamLayer, testImage } from './helpers.js';

const fakes: FakeRegistry[] = [];
async function fake(ctx?: FakeRegistry['ctx']): Promise<FakeRegistry> {
  const f = await new FakeRegistry(ctx).start();
  fakes.push(f);
  return f;
}
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});
const fast = { useStoredCredentials: false, retry: { retries: 2, minDelayMs: 1, maxDelayMs: 5 } };

describe('chunked upload resume (fake registry)', () => {
  it('resumes from the acknowledged offset when a chunk PATCH gets 416 after losing bytes', async () => {
    const f = await fake();
    let patches = 0;
    f.faults.push((req, res, ctx) => {
      if (req.method !== 'PATCH' || ++patches !== 2) return false;
      const id = /\/upload\/(\d+)/.exec(req.url ?? '')![1]!;
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', () => {
        const body = Buffer.concat(parts);
        const have = ctx.uploads.get(id)!;
        ctx.uploads.set(id, Buffer.concat([have, body.subarray(0, 1000)]));
        res.writeHead(416).end();
      });
      return true;
    });
    const client = new RegistryClient(f.host, fast);
    const data = randomBytes(10_000);
    const s = await client.openUpload('re/sume');
    const r = await s.upload(Readable.from([data]), { mode: 'chunked', chunkSize: 4000 });
    expect(r.digest).toBe(digestOf(data));
    expect(f.ctx.blobs.get(r.digest)!.equals(data)).toBe(true);
    const ranges = f.seen.filter((q) => q.method === 'PATCH').map((q) => q.contentRange);
    expect(ranges).toEqual(['0-3999', '4000-7999', '5000-7999', '8000-9999']);
    expect(f.seen.some((q) => q.method === 'GET' && q.url.startsWith('/upload/'))).toBe(true);
  });

  /** keepShort makes the PATCHes `which` picks keep only `keep(n)` of their n bytes, answering 202 with the honest Range. */
  function keepShort(f: FakeRegistry, which: (n: number) => boolean, keep: (n: number) => number) {
    let patches = 0;
    f.faults.push((req, res, ctx) => {
      if (req.method !== 'PATCH' || !which(++patches)) return false;
      const id = /\/upload\/(\d+)/.exec(req.url ?? '')![1]!;
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', () => {
        const body = Buffer.concat(parts);
        const have = ctx.uploads.get(id)!;
        const k = keep(body.length);
        // (a negative k drops bytes acknowledged before)
        const next =
          k >= 0 ? Buffer.concat([have, body.subarray(0, k)]) : have.subarray(0, have.length + k);
        ctx.uploads.set(id, next);
        res.writeHead(202, { location: `/upload/${id}`, range: `0-${next.length - 1}` }).end();
      });
      return true;
    });
  }

  it('sends the rest of a chunk when a 202 acknowledges less than the PATCH carried', async () => {
    const f = await fake();
    keepShort(
      f,
      (n) => n === 2,
      () => 1000,
    );
    const client = new RegistryClient(f.host, fast);
    const data = randomBytes(10_000);
    const s = await client.openUpload('short/range');
    const r = await s.upload(Readable.from([data]), { mode: 'chunked', chunkSize: 4000 });
    expect(f.ctx.blobs.get(r.digest)!.equals(data)).toBe(true);
    const ranges = f.seen.filter((q) => q.method === 'PATCH').map((q) => q.contentRange);
    expect(ranges).toEqual(['0-3999', '4000-7999', '5000-7999', '8000-9999']);
  });

  it('fails UPLOAD_FAILED, committing nothing, when the registry keeps acknowledging less or goes back', async () => {
    for (const keep of [() => 10, () => -500]) {
      const f = await fake();
      keepShort(f, (n) => n >= 2, keep);
      const client = new RegistryClient(f.host, fast);
      const s = await client.openUpload('short/range');
      const err: unknown = await s
        .upload(Readable.from([randomBytes(10_000)]), { mode: 'chunked', chunkSize: 4000 })
        .catch((e: unknown) => e);
      expect(isLadingError(err, 'UPLOAD_FAILED')).toBe(true);
      expect((err as Error).message).toMatch(/the registry acknowledged \d+ bytes$/);
      expect(f.seen.some((q) => q.method === 'PUT')).toBe(false);
    }
  });

  it('streams the blob in one PATCH when the registry asks for chunks past MAX_CHUNK_SIZE', async () => {
    const f = await fake();
    f.faults.push((req, res, ctx) => {
      if (req.method !== 'POST') return false;
      const id = String(ctx.uploads.size + 1);
      ctx.uploads.set(id, Buffer.alloc(0));
      res
        .writeHead(202, {
          location: `/upload/${id}`,
          range: '0-0',
          'oci-chunk-min-length': String(MAX_CHUNK_SIZE + 1),
        })
        .end();
      return true;
    });
    const data = randomBytes(100_000);
    const s = await new RegistryClient(f.host, fast).openUpload('huge/min');
    expect(s.minChunkLength).toBe(MAX_CHUNK_SIZE + 1);
    const r = await s.upload(Readable.from([data]), { mode: 'chunked', chunkSize: 4000 });
    expect(f.ctx.blobs.get(r.digest)!.equals(data)).toBe(true);
    const patches = f.seen.filter((q) => q.method === 'PATCH');
    expect(patches.map((q) => q.contentRange)).toEqual([undefined]);
  });

  it('resumes after the connection drops in the middle of a chunk', async () => {
    const f = await fake();
    let patches = 0;
    f.faults.push((req, _res, ctx) => {
      if (req.method !== 'PATCH' || ++patches !== 2) return false;
      const id = /\/upload\/(\d+)/.exec(req.url ?? '')![1]!;
      let got = Buffer.alloc(0);
      req.on('data', (c: Buffer) => {
        got = Buffer.concat([got, c]);
        if (got.length >= 1500) {
          ctx.uploads.set(id, Buffer.concat([ctx.uploads.get(id)!, got.subarray(0, 1500)]));
          req.socket.destroy();
        }
      });
      return true;
    });
    const client = new RegistryClient(f.host, fast);
    const data = randomBytes(12_000);
    const s = await client.openUpload('drop/ped');
    const r = await s.upload(Readable.from([data]), { mode: 'chunked', chunkSize: 5000 });
    expect(f.ctx.blobs.get(r.digest)!.equals(data)).toBe(true);
    const ranges = f.seen.filter((q) => q.method === 'PATCH').map((q) => q.contentRange);
    expect(ranges).toEqual(['0-4999', '5000-9999', '6500-9999', '10000-11999']);
  });
});

describe('write() retries (fake registry)', () => {
  function failFirstPatch(f: FakeRegistry): void {
    let failed = false;
    f.faults.push((req, res) => {
      if (req.method !== 'PATCH' || failed) return false;
      failed = true;
      req.resume();
      req.on('end', () => res.writeHead(500).end());
      return true;
    });
  }

  it('restarts a re-openable layer with a new session after a 500 and reports the retry', async () => {
    const f = await fake();
    failFirstPatch(f);
    const layer = layerFromBytes(randomBytes(3000), { compression: 'none' });
    const push = write(`${f.host}/retry/app:1`, testImage([layer]), {
      ...fast,
      uploadMode: 'stream',
    });
    const events: ProgressEvent[] = [];
    push.on('progress', (e) => events.push(e));
    const result = await push.done;
    expect(result.digest).toMatch(/^sha256:/);
    expect(events.some((e) => e.type === 'retry')).toBe(true);
    expect(f.ctx.blobs.has(await layer.digest())).toBe(true);
    expect(f.seen.filter((q) => q.method === 'POST').length).toBe(3); // config + layer + layer again
  });

  it('fails a consumed stream layer clearly with UPLOAD_FAILED and the cause', async () => {
    const f = await fake();
    failFirstPatch(f);
    const push = write(
      `${f.host}/retry/app:2`,
      testImage([new TestStreamLayer(new CountingSource(3))]),
      fast,
    );
    await push.authorized;
    const err = await push.done.catch((e: unknown) => e);
    expect(isLadingError(err, 'UPLOAD_FAILED')).toBe(true);
    expect((err as Error).cause).toBeInstanceOf(RegistryError);
    expect(((err as Error).cause as RegistryError).status).toBe(500);
    expect(f.seen.some((q) => q.url.includes('/manifests/'))).toBe(false);
    expect(f.ctx.uploads.size).toBe(0); // every session cancelled
  });
});

describe('copy() retries a blob transfer cut short (fake registry)', () => {
  it('pushes again from a fresh fetch after a 500 on the PATCH or a PUT, or a dropped connection', async () => {
    const data = randomBytes(3_000_000);
    const image = testImage([layerFromBytes(data, { compression: 'none' })]);
    const faults: Record<string, (f: FakeRegistry) => void> = {
      patch500: (f) => {
        let n = 0;
        f.faults.push((req, res) => {
          if (req.method !== 'PATCH' || n++ > 0) return false;
          req.resume();
          req.on('end', () => res.writeHead(500).end());
          return true;
        });
      },
      put503: (f) => {
        let n = 0;
        f.faults.push((req, res) => {
          if (req.method !== 'PUT' || !req.url!.includes('digest=') || n++ > 0) return false;
          req.resume();
          req.on('end', () => res.writeHead(503).end());
          return true;
        });
      },
      patchReset: (f) => {
        let n = 0;
        f.faults.push((req) => {
          if (req.method !== 'PATCH' || n++ > 0) return false;
          req.once('data', () => req.socket.destroy());
          return true;
        });
      },
    };
    for (const [name, inject] of Object.entries(faults)) {
      const src = memoryTarget();
      await writeImage(src, 'v1', image);
      const f = await fake();
      inject(f);
      const progress = new ProgressEmitter();
      const retries: ProgressEvent[] = [];
      progress.on('progress', (e) => {
        if (e.type === 'retry') retries.push(e);
      });
      const root = await copy(src, 'v1', registryTarget(`${f.host}/cp/retry`, fast), 'v1', {
        progress,
      });
      expect(root.digest, name).toBe(await image.digest());
      expect(f.ctx.blobs.get(await image.layers().then((l) => l[0]!.digest()))?.equals(data)).toBe(
        true,
      );
      expect(retries.length, name).toBeGreaterThan(0);
    }
  });

  it('fetches a blob again when the source drops the connection mid-body', async () => {
    const f = await fake();
    const data = randomBytes(2_000_000);
    const image = testImage([layerFromBytes(data, { compression: 'none' })]);
    await write(`${f.host}/cp/src:1`, image, fast).done;
    const layer = await (await image.layers())[0]!.digest();
    let cut = 0;
    f.faults.unshift((req, res) => {
      if (req.method !== 'GET' || !req.url!.endsWith(layer) || cut++ > 0) return false;
      res.writeHead(200, { 'content-length': String(data.length) });
      res.write(data.subarray(0, 100_000));
      setTimeout(() => res.socket?.destroy(), 20);
      return true;
    });
    const dst = memoryTarget();
    // (a memory target takes a stream: the source's GET is what is cut)
    const root = await copy(registryTarget(`${f.host}/cp/src`, fast), '1', dst, 'v1');
    expect(root.digest).toBe(await image.digest());
    expect(cut).toBe(2);
    // Without retries, the cut is one NETWORK error, not undici's SocketError.
    cut = 0;
    const err = await copy(
      registryTarget(`${f.host}/cp/src`, { ...fast, retry: false }),
      '1',
      memoryTarget(),
      'v1',
    ).catch((e: unknown) => e);
    expect(isLadingError(err, 'NETWORK')).toBe(true);
  });
});

describe('blob GET cut mid-body (fake registry)', () => {
  /**
   * cutting makes the GETs of `digest` send `keep(n)` bytes (n the GET's
   * number, from 1) of what they answer, then drop the connection; a
   * `Range: bytes=N-` GET is answered 206 from N when `ranges` is true,
   * else with the whole blob (200). Returns the Range headers seen.
   */
  function cutting(
    f: FakeRegistry,
    digest: string,
    data: Buffer,
    keep: (n: number) => number | undefined,
    ranges = true,
  ): (string | undefined)[] {
    const seen: (string | undefined)[] = [];
    f.faults.unshift((req, res) => {
      if (req.method !== 'GET' || !req.url!.endsWith(digest)) return false;
      const range = req.headers.range;
      seen.push(range);
      const from = ranges && range !== undefined ? Number(/^bytes=(\d+)-$/.exec(range)![1]) : 0;
      const body = data.subarray(from);
      res.writeHead(from > 0 ? 206 : 200, {
        'content-length': String(body.length),
        ...(from > 0 ? { 'content-range': `bytes ${from}-${data.length - 1}/${data.length}` } : {}),
      });
      const k = keep(seen.length);
      if (k === undefined) {
        res.end(body);
        return true;
      }
      res.flushHeaders();
      res.write(body.subarray(0, k));
      setTimeout(() => res.socket?.destroy(), 20);
      return true;
    });
    return seen;
  }

  async function pushed(f: FakeRegistry, data: Buffer): Promise<string> {
    const image = testImage([layerFromBytes(data, { compression: 'none' })]);
    await write(`${f.host}/re/get:1`, image, fast).done;
    return (await image.layers())[0]!.digest();
  }

  it('asks for the rest (Range) and hands out the whole verified blob', async () => {
    const f = await fake();
    const data = randomBytes(1_000_000);
    const digest = await pushed(f, data);
    const seen = cutting(f, digest, data, (n) => (n === 1 ? 100_000 : undefined));
    const client = new RegistryClient(f.host, fast);
    const got = await buffer(
      await client.getBlob('re/get', digest as never, { size: data.length }),
    );
    expect(got.equals(data)).toBe(true);
    expect(seen[0]).toBeUndefined();
    expect(seen[1]).toMatch(/^bytes=\d+-$/);
    expect(Number(/\d+/.exec(seen[1]!)![0])).toBeGreaterThan(0);
    expect(seen.length).toBe(2);
  });

  it('reads past what it has when the registry ignores the range', async () => {
    const f = await fake();
    const data = randomBytes(1_000_000);
    const digest = await pushed(f, data);
    const seen = cutting(f, digest, data, (n) => (n === 1 ? 300_000 : undefined), false);
    const client = new RegistryClient(f.host, fast);
    const got = await buffer(await client.getBlob('re/get', digest as never));
    expect(got.equals(data)).toBe(true);
    expect(seen.length).toBe(2);
  });

  it('goes on as long as each connection brings bytes, beyond the retry count', async () => {
    const f = await fake();
    const data = randomBytes(2_000_000);
    const digest = await pushed(f, data);
    const seen = cutting(f, digest, data, (n) => (n <= 6 ? 200_000 : undefined));
    const client = new RegistryClient(f.host, fast);
    const got = await buffer(await client.getBlob('re/get', digest as never));
    expect(got.equals(data)).toBe(true);
    expect(seen.length).toBe(7);
    expect(seen.length).toBeGreaterThan(fast.retry.retries + 1);
  });

  it('fails NETWORK after `retries` attempts that bring nothing, and at once without retries', async () => {
    const f = await fake();
    const data = randomBytes(1_000_000);
    const digest = await pushed(f, data);
    const seen = cutting(f, digest, data, (n) => (n === 1 ? 100_000 : 0));
    const client = new RegistryClient(f.host, fast);
    const err = await buffer(await client.getBlob('re/get', digest as never)).catch(
      (e: unknown) => e,
    );
    expect(isLadingError(err, 'NETWORK')).toBe(true);
    expect(seen.length).toBe(1 + fast.retry.retries + 1);
    seen.length = 0;
    const once = new RegistryClient(f.host, { ...fast, retry: false });
    const err2 = await buffer(await once.getBlob('re/get', digest as never)).catch(
      (e: unknown) => e,
    );
    expect(isLadingError(err2, 'NETWORK')).toBe(true);
    expect(seen.length).toBe(1);
  });

  it('gives a blob whose every connection drops before a byte retries + 1 GETs in all, under copy() too', async () => {
    const f = await fake();
    const data = randomBytes(300_000);
    const digest = await pushed(f, data);
    const seen = cutting(f, digest, data, () => 0);
    const err = await copy(
      registryTarget(`${f.host}/re/get`, fast),
      '1',
      memoryTarget(),
      'x',
    ).catch((e: unknown) => e);
    expect(isLadingError(err, 'NETWORK')).toBe(true);
    expect(seen.length).toBe(fast.retry.retries + 1);
  });

  it('ends a body cut after its last byte: nothing to ask for (size known), or a 416 for the rest', async () => {
    const f = await fake();
    const data = randomBytes(400_000);
    const digest = await pushed(f, data);
    const ranges: (string | undefined)[] = [];
    f.faults.unshift((req, res) => {
      if (req.method !== 'GET' || !req.url!.endsWith(digest)) return false;
      const range = req.headers.range;
      ranges.push(range);
      if (range === `bytes=${data.length}-`) {
        res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
        return true;
      }
      // chunked, all bytes, then dropped before the last chunk
      res.writeHead(200);
      res.write(data);
      setTimeout(() => res.socket?.destroy(), 20);
      return true;
    });
    const client = new RegistryClient(f.host, fast);
    const sized = await buffer(
      await client.getBlob('re/get', digest as never, { size: data.length }),
    );
    expect(sized.equals(data)).toBe(true);
    expect(ranges).toEqual([undefined]);
    const unsized = await buffer(await client.getBlob('re/get', digest as never));
    expect(unsized.equals(data)).toBe(true);
    expect(ranges).toEqual([undefined, undefined, `bytes=${data.length}-`]);
  });

  it('refuses a 206 that starts elsewhere than asked', async () => {
    const f = await fake();
    const data = randomBytes(500_000);
    const digest = await pushed(f, data);
    let gets = 0;
    f.faults.unshift((req, res) => {
      if (req.method !== 'GET' || !req.url!.endsWith(digest)) return false;
      if (++gets === 1) {
        res.writeHead(200, { 'content-length': String(data.length) });
        res.write(data.subarray(0, 100_000));
        setTimeout(() => res.socket?.destroy(), 20);
      } else {
        res.writeHead(206, {
          'content-length': String(data.length),
          'content-range': `bytes 0-${data.length - 1}/${data.length}`,
        });
        res.end(data);
      }
      return true;
    });
    const client = new RegistryClient(f.host, fast);
    const err = await buffer(await client.getBlob('re/get', digest as never)).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).message).toMatch(
      /asked for the blob from byte \d+, got Content-Range "bytes 0-/,
    );
    expect(gets).toBe(2);
  });
});

describe('nested retries (fake registry)', () => {
  it('gives a blob GET that keeps failing retries + 1 tries in all, not retries squared', async () => {
    const f = await fake();
    const data = randomBytes(10_000);
    const image = testImage([layerFromBytes(data, { compression: 'none' })]);
    await write(`${f.host}/cp/fail:1`, image, fast).done;
    const layer = await (await image.layers())[0]!.digest();
    let gets = 0;
    f.faults.unshift((req, res) => {
      if (req.method !== 'GET' || !req.url!.endsWith(layer)) return false;
      gets++;
      res.writeHead(503).end();
      return true;
    });
    const err = await copy(
      registryTarget(`${f.host}/cp/fail`, fast),
      '1',
      memoryTarget(),
      'x',
    ).catch((e: unknown) => e);
    expect(isLadingError(err, 'REGISTRY_ERROR')).toBe(true);
    expect(gets).toBe(fast.retry.retries + 1);
  });
});

describe('chunked uploads that cannot resume (fake registry)', () => {
  // The second PATCH of the first upload loses everything the session had.
  function loseUpload(f: FakeRegistry): void {
    let patches = 0;
    f.faults.push((req, res, ctx) => {
      if (req.method !== 'PATCH' || ++patches !== 2) return false;
      const id = /\/upload\/(\d+)/.exec(req.url ?? '')![1]!;
      req.resume();
      req.on('end', () => {
        ctx.uploads.set(id, Buffer.alloc(0));
        res.writeHead(416).end();
      });
      return true;
    });
  }

  it('restarts a re-openable layer from the start with a new session', async () => {
    const f = await fake();
    loseUpload(f);
    const layer = layerFromBytes(randomBytes(10_000), { compression: 'none' });
    const push = write(`${f.host}/lost/app:1`, testImage([layer]), {
      ...fast,
      uploadMode: 'chunked',
      chunkSize: 4000,
    });
    await push.done;
    expect(f.ctx.blobs.has(await layer.digest())).toBe(true);
    expect(f.seen.filter((q) => q.method === 'POST').length).toBe(3);
  });

  it('fails a stream layer with UPLOAD_FAILED', async () => {
    const f = await fake();
    loseUpload(f);
    const push = write(
      `${f.host}/lost/app:2`,
      testImage([new TestStreamLayer(new CountingSource(4, 4096))]),
      {
        ...fast,
        uploadMode: 'chunked',
        chunkSize: 4000,
      },
    );
    const err = await push.done.catch((e: unknown) => e);
    expect(isLadingError(err, 'UPLOAD_FAILED')).toBe(true);
    expect(f.seen.some((q) => q.url.includes('/manifests/'))).toBe(false);
  });
});

describe('transport errors and retries (fake registry)', () => {
  it('retries a 429 honouring Retry-After and then succeeds', async () => {
    const f = await fake();
    f.ctx.manifests.set('a/b:1', {
      bytes: Buffer.from('{"schemaVersion":2}'),
      type: 'application/vnd.oci.image.manifest.v1+json',
    });
    let n = 0;
    f.faults.push((req, res) => {
      if (!req.url!.includes('/manifests/') || n++ > 0) return false;
      res.writeHead(429, { 'retry-after': '0' }).end();
      return true;
    });
    const m = await new RegistryClient(f.host, fast).getManifest('a/b', '1');
    expect(m.bytes.toString()).toBe('{"schemaVersion":2}');
    expect(f.seen.filter((q) => q.url.includes('/manifests/')).length).toBe(2);
  });

  it('gives up after the retries with a temporary REGISTRY_ERROR on 503', async () => {
    const f = await fake();
    f.faults.push((req, res) => {
      if (!req.url!.includes('/manifests/')) return false;
      res
        .writeHead(503, { 'content-type': 'application/json' })
        .end('{"errors":[{"code":"UNAVAILABLE","message":"busy"}]}');
      return true;
    });
    const err = await new RegistryClient(f.host, fast)
      .getManifest('a/b', '1')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    const e = err as RegistryError;
    expect(e.code).toBe('REGISTRY_ERROR');
    expect(e.status).toBe(503);
    expect(e.temporary).toBe(true);
    expect(e.errors).toEqual([{ code: 'UNAVAILABLE', message: 'busy' }]);
    expect(f.seen.filter((q) => q.url.includes('/manifests/')).length).toBe(3);
  });

  it('maps 404 to NOT_FOUND with the spec errors and reads at most 64 KiB of a huge error body', async () => {
    const f = await fake();
    const client = new RegistryClient(f.host, fast);
    const err = await client.getManifest('a/b', 'missing').catch((e: unknown) => e);
    expect(isLadingError(err, 'NOT_FOUND')).toBe(true);
    expect((err as RegistryError).errors[0]?.code).toBe('MANIFEST_UNKNOWN');
    expect((err as RegistryError).temporary).toBe(false);
    f.faults.push((req, res) => {
      if (!req.url!.includes('/manifests/')) return false;
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(`{"errors":[{"code":"X","message":"${'y'.repeat(1024 * 1024)}"}]}`);
      return true;
    });
    const big = await client.getManifest('a/b', 'huge').catch((e: unknown) => e);
    expect(isLadingError(big, 'NOT_FOUND')).toBe(true);
    expect((big as RegistryError).errors).toEqual([]);
  });

  it('fails with a temporary NETWORK error when headers do not arrive within headersTimeout', async () => {
    const f = await fake();
    f.faults.push((req) => req.url!.includes('/manifests/')); // never answers
    const err = await new RegistryClient(f.host, { ...fast, retry: false, headersTimeout: 200 })
      .getManifest('a/b', '1')
      .catch((e: unknown) => e);
    expect(isLadingError(err, 'NETWORK')).toBe(true);
    expect((err as RegistryError).temporary).toBe(true);
  });

  /**
   * cutOnce makes the first GET of each path that passes `match` send 5
   * bytes of its body, then drop the connection; it answers how many it cut.
   */
  /** cutOnce drops the first GET of each path `match` takes after its first bytes (`head`). */
  function cutOnce(
    f: FakeRegistry,
    match: (path: string) => boolean,
    head: (path: string) => string | Buffer = () => '{"tag',
  ): () => number {
    const cut = new Set<string>();
    // (first: before any fault that answers the same paths)
    f.faults.unshift((req, res) => {
      const path = new URL(req.url!, f.url).pathname;
      if (req.method !== 'GET' || !match(path) || cut.has(path)) return false;
      cut.add(path);
      res.writeHead(200, { 'content-length': '1000', 'content-type': 'application/json' });
      res.write(head(path));
      setTimeout(() => res.socket?.destroy(), 20);
      return true;
    });
    return () => cut.size;
  }

  it('reads a manifest, a tags page and a config again when the connection drops mid-body, else fails NETWORK', async () => {
    const f = await fake();
    const image = testImage([layerFromBytes(Buffer.from('config read twice'))]);
    await write(`${f.host}/mid/body:1`, image, fast).done;
    f.faults.push((req, res) => {
      if (new URL(req.url!, f.url).pathname !== '/v2/mid/body/tags/list') return false;
      res.writeHead(200).end('{"tags":["1"]}');
      return true;
    });
    const config = (await image.manifest()).config.digest;
    // (the config's GET is cut after its own first bytes: it is asked for the rest)
    const rawConfig = Buffer.from(await image.rawConfig());
    const cuts = cutOnce(
      f,
      (p) => p.endsWith('/manifests/1') || p.endsWith('/tags/list') || p.endsWith(config),
      (p) => (p.endsWith(config) ? rawConfig.subarray(0, 5) : '{"tag'),
    );
    const client = new RegistryClient(f.host, fast);
    expect((await client.getManifest('mid/body', '1')).digest).toBe(await image.digest());
    expect(await client.listTags('mid/body')).toEqual(['1']);
    const pulled = await pullImage(`${f.host}/mid/body:1`, fast);
    expect(Buffer.from(await pulled.rawConfig()).equals(Buffer.from(await image.rawConfig()))).toBe(
      true,
    );
    expect(cuts()).toBe(3);
    // Without retries: one line, NETWORK (temporary), not undici's raw SocketError.
    cutOnce(f, (p) => p.endsWith('/manifests/1') || p.endsWith('/tags/list'));
    const once = new RegistryClient(f.host, { ...fast, retry: false });
    for (const op of [() => once.getManifest('mid/body', '1'), () => once.listTags('mid/body')]) {
      const err = await op().catch((e: unknown) => e);
      expect(isLadingError(err, 'NETWORK')).toBe(true);
      expect((err as RegistryError).temporary).toBe(true);
      expect((err as Error).message).toMatch(
        /^GET http:\/\/127\.0\.0\.1:\d+\/v2\/mid\/body\/\S+: reading the response failed: /,
      );
    }
  });

  it('reads a tags page larger than a manifest, within the listing byte limit', async () => {
    const f = await fake();
    const tags = Array.from({ length: 200_000 }, (_, i) => `tag-${String(i).padStart(20, '0')}`);
    const page = JSON.stringify({ name: 'big', tags });
    expect(page.length).toBeGreaterThan(4 * 1024 * 1024);
    f.faults.push((req, res) => {
      if (new URL(req.url!, f.url).pathname !== '/v2/big/tags/list') return false;
      res.writeHead(200, { 'content-type': 'application/json' }).end(page);
      return true;
    });
    expect(await new RegistryClient(f.host, fast).listTags('big')).toEqual(tags);
  });

  it('answers REGISTRY_ERROR, not a TypeError, for referrers pages of the wrong shape', async () => {
    const f = await fake();
    const subject = digestOf('subject');
    const good = {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: digestOf('r'),
      size: 2,
    };
    const pages: Record<string, unknown> = {
      first: { manifests: [good] },
      nulls: { manifests: [null] },
      none: {},
    };
    let second: unknown;
    f.faults.push((req, res) => {
      const u = new URL(req.url!, f.url);
      if (!u.pathname.startsWith('/v2/refs/referrers/')) return false;
      const body = u.searchParams.get('page') === null ? pages.first : second;
      res
        .writeHead(200, {
          'content-type': 'application/vnd.oci.image.index.v1+json',
          ...(u.searchParams.get('page') === null
            ? { link: `<${u.pathname}?page=2>; rel="next"` }
            : {}),
        })
        .end(JSON.stringify({ schemaVersion: 2, ...(body as object) }));
      return true;
    });
    const client = new RegistryClient(f.host, fast);
    second = pages.none;
    expect(await client.referrers('refs', subject)).toEqual([good]);
    second = pages.nulls;
    for (const artifactType of [undefined, 'x']) {
      const err = await client
        .referrers('refs', subject, { artifactType })
        .catch((e: unknown) => e);
      expect(isLadingError(err, 'REGISTRY_ERROR')).toBe(true);
      expect((err as Error).message).toBe(
        `the referrers of ${subject} list an entry that is not a descriptor`,
      );
    }
  });

  it('refuses manifests over 4 MiB and manifests that do not match their digest', async () => {
    const f = await fake();
    const big = Buffer.alloc(4 * 1024 * 1024 + 1, 0x20);
    f.ctx.manifests.set('a/b:big', {
      bytes: big,
      type: 'application/vnd.oci.image.manifest.v1+json',
    });
    const client = new RegistryClient(f.host, fast);
    expect(
      isLadingError(
        await client.getManifest('a/b', 'big').catch((e: unknown) => e),
        'MANIFEST_TOO_LARGE',
      ),
    ).toBe(true);
    const put = await client
      .putManifest('a/b', 'x', big, 'application/vnd.oci.image.manifest.v1+json')
      .catch((e: unknown) => e);
    expect(isLadingError(put, 'MANIFEST_TOO_LARGE')).toBe(true);
    const liar = digestOf('something else');
    f.ctx.manifests.set(`a/b:${liar}`, {
      bytes: Buffer.from('{"schemaVersion":2}'),
      type: 'application/vnd.oci.image.manifest.v1+json',
    });
    expect(
      isLadingError(
        await client.getManifest('a/b', liar).catch((e: unknown) => e),
        'DIGEST_MISMATCH',
      ),
    ).toBe(true);
  });

  it('refuses a manifest streamed without Content-Length once it passes 4 MiB, and stays usable', async () => {
    const f = await fake();
    f.faults.push((req, res) => {
      if (!req.url!.endsWith('/manifests/endless')) return false;
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
      const block = Buffer.alloc(64 * 1024, 0x20);
      let sent = 0;
      const more = (): void => {
        while (sent < 80 && !res.destroyed) {
          sent++;
          if (!res.write(block)) {
            res.once('drain', more);
            return;
          }
        }
        res.end();
      };
      res.on('error', () => undefined);
      more();
      return true;
    });
    const client = new RegistryClient(f.host, fast);
    const err = await client.getManifest('a/b', 'endless').catch((e: unknown) => e);
    expect(isLadingError(err, 'MANIFEST_TOO_LARGE')).toBe(true);
    const small = Buffer.from('{"schemaVersion":2}');
    f.ctx.manifests.set('a/b:small', {
      bytes: small,
      type: 'application/vnd.oci.image.manifest.v1+json',
    });
    const ok = await client.getManifest('a/b', 'small');
    expect(Buffer.from(ok.bytes).equals(small)).toBe(true);
  });

  it('maps a refused connection to NETWORK', async () => {
    const f = await fake();
    const host = f.host;
    await f.close();
    fakes.splice(fakes.indexOf(f), 1);
    const err = await new RegistryClient(host, { ...fast, retry: false })
      .ping()
      .catch((e: unknown) => e);
    expect(isLadingError(err, 'NETWORK')).toBe(true);
  });

  it('redacts query values in error URLs', async () => {
    const f = await fake();
    f.faults.push((req, res) => {
      if (req.method !== 'PUT') return false;
      req.resume();
      req.on('end', () => res.writeHead(400).end());
      return true;
    });
    const s = await new RegistryClient(f.host, fast).openUpload('r/x');
    const err = (await s
      .commit(digestOf('x'), { body: Buffer.from('x') })
      .catch((e: unknown) => e)) as RegistryError;
    expect(err.url).toContain('sig=REDACTED');
    expect(err.url).not.toContain('abc');
    expect(err.message).not.toContain('abc');
  });
});

describe('token endpoints that answer badly (fake registry)', () => {
  it('fails UNAUTHORIZED, quoting nothing, on a bare token, an empty one, or one no header can carry', async () => {
    const answers = [
      'TOPSECRET-hunter2',
      JSON.stringify({ access_token: '' }),
      JSON.stringify({ token: 'hunter2\r\nx-injected: 1' }),
      JSON.stringify({ token: 'hunter2-\u00e9\u4e2d' }),
    ];
    const whys = [
      'the token endpoint answered invalid JSON',
      'the token endpoint answered no token',
      'the token endpoint answered a token that cannot be sent in a header',
      'the token endpoint answered a token that cannot be sent in a header',
    ];
    for (const [i, answer] of answers.entries()) {
      const f = await fake();
      f.faults.push((req, res) => {
        const u = new URL(req.url!, f.url);
        if (u.pathname === '/token') {
          res.writeHead(200, { 'content-type': 'application/json' }).end(answer);
          return true;
        }
        if (req.headers.authorization === undefined) {
          res
            .writeHead(401, {
              'www-authenticate': `Bearer realm="${f.url}/token",service="fake"`,
            })
            .end();
          return true;
        }
        return false;
      });
      const err: unknown = await new RegistryClient(f.host, {
        ...fast,
        auth: { username: 'u', password: 'p' },
      })
        .getManifest('a/b', '1')
        .catch((e: unknown) => e);
      expect(isLadingError(err, 'UNAUTHORIZED')).toBe(true);
      expect((err as Error).message).toBe(`${f.host}: ${whys[i]!}`);
      expect(inspect(err)).not.toContain('hunter2');
    }
  });
});

describe('credentials stay on the registry origin (fake registry)', () => {
  const basic = `Basic ${Buffer.from('u:p').toString('base64')}`;

  it('sends no Authorization to an upload Location on another origin and keeps its query verbatim', async () => {
    const reg = await fake();
    const storage = await fake(reg.ctx);
    reg.requireAuth = basic;
    reg.uploadBase = storage.url;
    const client = new RegistryClient(reg.host, {
      ...fast,
      auth: { username: 'u', password: 'p' },
    });
    const s = await client.openUpload('ext/up');
    expect(s.location.startsWith(storage.url)).toBe(true);
    const data = randomBytes(2000);
    await s.upload(Readable.from([data]));
    // The POST goes without credentials until the registry asks (its 401
    // teaches the challenge), then with them; no other credentials go.
    const posts = reg.seen.filter((q) => q.method === 'POST');
    expect(posts.map((q) => q.authorization)).toEqual([undefined, basic]);
    expect(storage.seen.length).toBeGreaterThanOrEqual(2);
    for (const q of storage.seen) expect(q.authorization).toBeUndefined();
    const put = storage.seen.find((q) => q.method === 'PUT')!;
    const u = new URL(put.url, storage.url);
    expect(u.searchParams.get('sig')).toBe('abc+def');
    expect(u.search).toContain('sig=abc%2Bdef');
    expect(u.searchParams.get('digest')).toBe(digestOf(data));
  });

  it('follows a blob redirect to another origin without credentials', async () => {
    const reg = await fake();
    const cdn = await fake(reg.ctx);
    reg.requireAuth = basic;
    const data = randomBytes(500);
    const digest = digestOf(data);
    reg.ctx.blobs.set(digest, data);
    reg.faults.push((req, res) => {
      if (req.method !== 'GET' || !req.url!.includes('/blobs/sha256:')) return false;
      if (req.headers.authorization !== basic) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' }).end();
        return true;
      }
      res.writeHead(307, { location: `${cdn.url}/v2/x/blobs/${digest}` }).end();
      return true;
    });
    const client = new RegistryClient(reg.host, {
      ...fast,
      auth: { username: 'u', password: 'p' },
    });
    const got = await buffer(await client.getBlob('x', digest));
    expect(got.equals(data)).toBe(true);
    expect(cdn.seen.length).toBe(1);
    expect(cdn.seen[0]!.authorization).toBeUndefined();
    expect(await client.blobLocation('x', digest)).toBe(`${cdn.url}/v2/x/blobs/${digest}`);
  });

  it('answers REGISTRY_ERROR, not DENIED or NETWORK, for a refusing storage, a non-HTTP redirect and a redirect loop', async () => {
    const reg = await fake();
    const cdn = await fake();
    const digest = digestOf('stored elsewhere');
    const where: Record<string, string> = {
      expired: `${cdn.url}/signed?X-Amz-Signature=abc`,
      file: 'file:///etc/passwd',
      loop: `/v2/x/blobs/${digest}`,
    };
    let pick = 'expired';
    reg.faults.push((req, res) => {
      if (!req.url!.includes('/blobs/sha256:')) return false;
      res.writeHead(307, { location: where[pick] }).end();
      return true;
    });
    cdn.faults.push((_req, res) => {
      res
        .writeHead(403, { 'content-type': 'application/xml' })
        .end('<Error>Request has expired</Error>');
      return true;
    });
    const client = new RegistryClient(reg.host, { ...fast, retry: false });
    const messages: Record<string, RegExp> = {
      expired:
        /: 403 from the storage the registry redirected to \(a signed URL that expired or was refused\)$/,
      file: /: 307 redirects to a file: URL$/,
      loop: /: too many redirects$/,
    };
    for (const name of Object.keys(where)) {
      pick = name;
      const err = await client.getBlob('x', digest).catch((e: unknown) => e);
      expect(isLadingError(err, 'REGISTRY_ERROR'), name).toBe(true);
      expect((err as Error).message, name).toMatch(messages[name]!);
      expect((err as Error).message).not.toContain('abc');
    }
  });

  it('follows pagination Links on the same origin only', async () => {
    const reg = await fake();
    const other = await fake();
    reg.faults.push((req, res) => {
      const u = new URL(req.url!, reg.url);
      if (u.pathname === '/v2/same/tags/list') {
        const last = u.searchParams.get('last');
        if (last === null) {
          res
            .writeHead(200, { link: '</v2/same/tags/list?n=2&last=b>; rel="next"' })
            .end('{"tags":["a","b"]}');
        } else res.writeHead(200).end('{"tags":["c"]}');
        return true;
      }
      if (u.pathname === '/v2/away/tags/list') {
        res
          .writeHead(200, { link: `<${other.url}/v2/away/tags/list?last=b>; rel="next"` })
          .end('{"tags":["a","b"]}');
        return true;
      }
      return false;
    });
    const client = new RegistryClient(reg.host, fast);
    expect(await client.listTags('same', { pageSize: 2 })).toEqual(['a', 'b', 'c']);
    expect(await client.listTags('away')).toEqual(['a', 'b']);
    expect(other.seen).toEqual([]);
  });
});
