import { randomBytes } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  ProgressEmitter,
  appendLayers,
  copy,
  emptyImage,
  isLadingError,
  layerFromBytes,
  writeImage,
  type Digest,
} from '@lading/core';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { recordingProxy, type RecordingProxy } from '@lading/testing';
import { RegistryClient, registryTarget } from '../src/index.js';
import { FakeRegistry } from './fake-registry.js';

// copy() between two plain-HTTP registries: the source lends the layer in
// reused memory and the destination takes it as the body of one
// PUT ?digest= on a connection of its own, whose last chunk goes only once
// the bytes were checked.

let source: Registry;
let sourceProxy: RecordingProxy;
let dest: Registry;
let destProxy: RecordingProxy;
const layer = layerFromBytes(randomBytes(3 * 1024 * 1024 + 11));
let layerBytes: Buffer;
let layerDigest: Digest;

beforeAll(async () => {
  source = createRegistry({ storage: memoryStorage() });
  sourceProxy = await recordingProxy((await source.listen({ host: '127.0.0.1', port: 0 })).url);
  dest = createRegistry({ storage: memoryStorage() });
  destProxy = await recordingProxy((await dest.listen({ host: '127.0.0.1', port: 0 })).url);
  layerBytes = await buffer(layer.compressed());
  layerDigest = await layer.digest();
  await writeImage(
    registryTarget(`${sourceProxy.host}/lend/app`),
    'v1',
    appendLayers(emptyImage(), layer),
  );
});
afterAll(async () => {
  await Promise.all([sourceProxy.close(), destProxy.close()]);
  await Promise.all([source.close(), dest.close()]);
});
beforeEach(() => {
  sourceProxy.clear();
  destProxy.clear();
});

/** isLayerPut tells the layer's commit (its PUT ?digest=) from the config's. */
const isLayerPut = (req: { method?: string; url?: string }) =>
  req.method === 'PUT' && (req.url ?? '').includes(encodeURIComponent(layerDigest));

const layerRequests = (proxy: RecordingProxy) =>
  proxy.requests.filter((r) => r.method !== 'HEAD' && !r.path.includes('/manifests/'));

describe('copy from a registry into a registry, both plain HTTP', () => {
  it('sends the layer as the body of one PUT ?digest= after the POST, with no PATCH', async () => {
    const progress = new ProgressEmitter();
    let last = 0;
    progress.on('progress', (e) => {
      if (e.type === 'blob-progress' && e.id === layerDigest) last = e.bytes;
    });
    await copy(
      registryTarget(`${sourceProxy.host}/lend/app`),
      'v1',
      registryTarget(`${destProxy.host}/copied/app`),
      'v1',
      { progress },
    );
    expect(last).toBe(layerBytes.length);
    const got = await buffer(
      await new RegistryClient(destProxy.host).getBlob('copied/app', layerDigest),
    );
    expect(got.equals(layerBytes)).toBe(true);
    // The source's GET went on a connection of its own (closed after it).
    const get = sourceProxy.requests.find(
      (r) => r.method === 'GET' && r.path.endsWith(layerDigest),
    );
    expect(get?.headers.connection).toBe('close');
    expect(destProxy.requests.filter((r) => r.method === 'PATCH')).toEqual([]);
    const puts = destProxy.requests.filter(
      (r) => r.method === 'PUT' && r.path.includes(encodeURIComponent(layerDigest)),
    );
    expect(puts).toHaveLength(1);
    expect(puts[0]?.bodyBytes).toBe(layerBytes.length);
    expect(puts[0]?.headers['content-length']).toBe(String(layerBytes.length));
    // Into the session the POST opened.
    const posts = destProxy.requests.filter((r) => r.method === 'POST');
    expect(posts.some((r) => r.index < puts[0]!.index)).toBe(true);
  });

  it('never finishes the PUT of a layer whose bytes are not its digest: DIGEST_MISMATCH, nothing stored', async () => {
    // A source serving the layer with one byte changed near its end.
    const bad = await new FakeRegistry().start();
    try {
      await copy(
        registryTarget(`${sourceProxy.host}/lend/app`),
        'v1',
        registryTarget(`${bad.host}/lend/app`),
        'v1',
      );
      const tampered = Buffer.from(bad.ctx.blobs.get(layerDigest) ?? Buffer.alloc(0));
      expect(tampered.length).toBe(layerBytes.length);
      tampered[tampered.length - 3]! ^= 0xff;
      bad.ctx.blobs.set(layerDigest, tampered);
      const err = await copy(
        registryTarget(`${bad.host}/lend/app`),
        'v1',
        registryTarget(`${destProxy.host}/tampered/app`),
        'v1',
      ).catch((e: unknown) => e);
      expect(isLadingError(err) && err.code === ErrorCode.DigestMismatch).toBe(true);
      // Its PUT went, but not its last bytes: the registry stored nothing.
      const puts = destProxy.requests.filter(
        (r) => r.method === 'PUT' && r.path.includes(encodeURIComponent(layerDigest)),
      );
      expect(puts).toHaveLength(1);
      expect(puts[0]!.bodyBytes).toBeLessThan(layerBytes.length);
      const head = await fetch(`${destProxy.url}/v2/tampered/app/blobs/${layerDigest}`, {
        method: 'HEAD',
      });
      expect(head.status).toBe(404);
    } finally {
      await bad.close();
    }
  });

  it('stops at once with ABORTED, deletes the upload and never commits it', async () => {
    const controller = new AbortController();
    // Aborted once the first chunk has gone into the open PATCH.
    const target = registryTarget(`${destProxy.host}/aborted/app`);
    const openSink = target.openSink.bind(target);
    target.openSink = async (desc, options) => {
      const sink = await openSink(desc, options);
      return (
        sink && {
          ...sink,
          write: async (chunk, offset) => {
            await sink.write(chunk, offset);
            controller.abort();
          },
        }
      );
    };
    const err = await copy(registryTarget(`${sourceProxy.host}/lend/app`), 'v1', target, 'v1', {
      signal: controller.signal,
    }).catch((e: unknown) => e);
    expect(isLadingError(err) && err.code === ErrorCode.Aborted).toBe(true);
    const reqs = layerRequests(destProxy);
    // (The config, a small blob of its own, may be stored before the abort.)
    // The layer's PUT was cut short: not all its bytes, and its session
    // (the path the PUT went to) is deleted.
    const puts = reqs.filter((r) => r.method === 'PUT' && r.path.includes(layerDigest.slice(7)));
    expect(puts).toHaveLength(1);
    expect(puts[0]!.bodyBytes).toBeLessThan(layerBytes.length);
    const session = puts[0]!.path.split('?')[0];
    expect(reqs.some((r) => r.method === 'DELETE' && r.path.split('?')[0] === session)).toBe(true);
    const head = await fetch(`${destProxy.url}/v2/aborted/app/blobs/${layerDigest}`, {
      method: 'HEAD',
    });
    expect(head.status).toBe(404);
  });
});

describe("copy into a registry that answers the layer's PUT its own way", () => {
  let fake: FakeRegistry;
  beforeAll(async () => {
    fake = await new FakeRegistry().start();
  });
  afterAll(() => fake.close());
  beforeEach(() => {
    // Each test copies into an empty registry.
    fake.ctx.blobs.clear();
    fake.ctx.manifests.clear();
  });

  it("fails with the registry's error and deletes the session", async () => {
    fake.faults = [
      (req) => {
        if (!isLayerPut(req)) return false;
        // Answered at once, on the socket (chunked, as Go and Node send
        // small error bodies), while the body is still read and thrown
        // away: a server that closed now would reset the connection, and
        // the answer with it.
        const body = '{"errors":[{"code":"DENIED","message":"quota exceeded"}]}';
        req.socket.write(
          'HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n' +
            `transfer-encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
        );
        req.resume();
        req.on('end', () => req.socket.destroy());
        req.on('close', () => req.socket.destroy());
        return true;
      },
    ];
    const started = performance.now();
    const err = await copy(
      registryTarget(`${sourceProxy.host}/lend/app`),
      'v1',
      registryTarget(`${fake.host}/refused/app`),
      'v1',
    ).catch((e: unknown) => e);
    expect(isLadingError(err) && err.code === ErrorCode.Denied).toBe(true);
    expect((err as Error).message).toMatch(/quota exceeded/);
    expect(performance.now() - started).toBeLessThan(5000);
    expect(fake.seen.some((r) => r.method === 'DELETE')).toBe(true);
    expect(fake.ctx.blobs.has(layerDigest)).toBe(false);
  });

  it('takes an interim 100 Continue before the answer', async () => {
    fake.faults = [
      (req, res) => {
        if (isLayerPut(req)) res.writeContinue();
        return false;
      },
    ];
    const root = await copy(
      registryTarget(`${sourceProxy.host}/lend/app`),
      'v1',
      registryTarget(`${fake.host}/continued/app`),
      'v1',
    );
    const stored = fake.ctx.blobs.get(layerDigest);
    expect(stored?.equals(layerBytes)).toBe(true);
    expect(fake.ctx.manifests.get(`continued/app:${root.digest}`)).toBeDefined();
  });

  it('fails NETWORK (temporary) when the registry stops reading the body', async () => {
    fake.faults = [
      (req) => {
        if (!isLayerPut(req)) return false;
        req.pause();
        return true;
      },
    ];
    const started = performance.now();
    const err = await copy(
      registryTarget(`${sourceProxy.host}/lend/app`),
      'v1',
      registryTarget(`${fake.host}/stalled/app`, { headersTimeout: 300 }),
      'v1',
    ).catch((e: unknown) => e);
    expect(isLadingError(err) && err.code === ErrorCode.Network).toBe(true);
    expect((err as { temporary?: boolean }).temporary).toBe(true);
    expect(performance.now() - started).toBeLessThan(4000);
  });
});
