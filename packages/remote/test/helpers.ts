import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { onTestFinished } from 'vitest';
import {
  LayerConsumedError,
  MediaType,
  createHasher,
  digestOf,
  type ConfigFile,
  type Descriptor,
  type Digest,
  type Image,
  type ImageManifest,
  type Layer,
  type MediaTypeString,
} from '@lading/core';
import { singleFileTar } from '@lading/testing';
import { createRegistry, memoryStorage } from '@lading/registry';

/**
 * tempDir makes a directory under the OS temp dir, named `<prefix>XXXXXX`,
 * and removes it when the running test finishes, passed or failed. Only a
 * test (or its beforeEach) may call it; elsewhere it throws.
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const remove = (): void => {
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    onTestFinished(remove);
  } catch (err) {
    // Outside a test: nothing would remove it later.
    remove();
    throw err;
  }
  return dir;
}

/** asTar wraps `size` bytes from `source` as the one file of a tar archive, streamed. */
export async function* asTar(source: Readable, size: number): AsyncGenerator<Buffer> {
  yield singleFileTar('data.bin', Buffer.alloc(size)).subarray(0, 512);
  for await (const chunk of source as AsyncIterable<Buffer>) yield chunk;
  yield Buffer.alloc(((512 - (size % 512)) % 512) + 1024);
}

/** CountingSource produces `chunks` chunks of `chunkSize` pseudo-random bytes and counts what was read. */
export class CountingSource extends Readable {
  bytesRead = 0;
  readCalls = 0;
  #left: number;
  readonly #size: number;
  #seed: number;
  constructor(chunks: number, chunkSize = 64 * 1024, seed = 1) {
    super();
    this.#left = chunks;
    this.#size = chunkSize;
    this.#seed = seed;
  }
  override _read(): void {
    this.readCalls++;
    if (this.#left === 0) {
      this.push(null);
      return;
    }
    this.#left--;
    const b = Buffer.alloc(this.#size);
    for (let i = 0; i < b.length; i++) {
      this.#seed = (this.#seed * 1103515245 + 12345) & 0x7fffffff;
      b[i] = this.#seed >> 16;
    }
    this.bytesRead += b.length;
    this.push(b);
  }
}

class Hash extends Transform {
  readonly hasher = createHasher();
  size = 0;
  override _transform(c: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.hasher.update(c);
    this.size += c.length;
    cb(null, c);
  }
}

function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

/**
 * TestStreamLayer is a minimal single-pass layer (gzip of `source`) whose
 * digest, diffId and size settle when the compressed stream has been read.
 */
export class TestStreamLayer implements Layer {
  readonly mediaType: MediaTypeString = MediaType.OciLayerGzip;
  compressedCalls = 0;
  readonly #source: Readable;
  #consumed = false;
  readonly #digest: Promise<Digest>;
  readonly #diffId: Promise<Digest>;
  readonly #size: Promise<number>;
  #settle!: (v: { digest: Digest; diffId: Digest; size: number }) => void;
  #fail!: (err: unknown) => void;

  constructor(source: Readable) {
    this.#source = source;
    const all = handled(
      new Promise<{ digest: Digest; diffId: Digest; size: number }>((res, rej) => {
        this.#settle = res;
        this.#fail = rej;
      }),
    );
    this.#digest = handled(all.then((v) => v.digest));
    this.#diffId = handled(all.then((v) => v.diffId));
    this.#size = handled(all.then((v) => v.size));
  }
  digest(): Promise<Digest> {
    return this.#digest;
  }
  diffId(): Promise<Digest> {
    return this.#diffId;
  }
  size(): Promise<number> {
    return this.#size;
  }
  compressed(): Readable {
    this.compressedCalls++;
    if (this.#consumed) throw new LayerConsumedError();
    this.#consumed = true;
    const tarHash = new Hash();
    const blobHash = new Hash();
    pipeline(this.#source, tarHash, createGzip({ level: 1 }), blobHash).catch((err: unknown) => {
      this.#fail(err);
    });
    blobHash.once('end', () => {
      this.#settle({
        digest: blobHash.hasher.digest(),
        diffId: tarHash.hasher.digest(),
        size: blobHash.size,
      });
    });
    blobHash.once('close', () => {
      this.#fail(new Error('stream layer destroyed before its end'));
    });
    return blobHash;
  }
  uncompressed(): Readable {
    throw new Error('not needed in these tests');
  }
}

/** testImage is a hand-written lazy Image over `layers` (config waits on diffIds, manifest on digests). */
export function testImage(
  layers: readonly Layer[],
  options: { mediaType?: MediaTypeString; base?: Image } = {},
): Image {
  const mediaType = options.mediaType ?? MediaType.OciManifest;
  const docker = mediaType === MediaType.DockerManifest;
  let config: Promise<Uint8Array> | undefined;
  let manifest: Promise<Uint8Array> | undefined;
  const rawConfig = (): Promise<Uint8Array> =>
    (config ??= (async () => {
      const diffIds = await Promise.all(layers.map((l) => l.diffId()));
      const cfg: ConfigFile = {
        architecture: 'amd64',
        os: 'linux',
        config: { Env: ['PATH=/usr/bin'] },
        rootfs: { type: 'layers', diff_ids: diffIds },
      };
      return Buffer.from(JSON.stringify(cfg));
    })());
  const configDescriptor = async (): Promise<Descriptor> => {
    const raw = await rawConfig();
    return {
      mediaType: docker ? MediaType.DockerConfig : MediaType.OciConfig,
      digest: digestOf(raw),
      size: raw.length,
    };
  };
  const rawManifest = (): Promise<Uint8Array> =>
    (manifest ??= (async () => {
      const descs = await Promise.all(
        layers.map(async (l): Promise<Descriptor> => {
          const known = l.knownDescriptor?.();
          if (known !== undefined)
            return { mediaType: known.mediaType, digest: known.digest, size: known.size };
          return { mediaType: l.mediaType, digest: await l.digest(), size: await l.size() };
        }),
      );
      const m: ImageManifest = {
        schemaVersion: 2,
        mediaType,
        config: await configDescriptor(),
        layers: descs,
      };
      return Buffer.from(JSON.stringify(m));
    })());
  return {
    mediaType,
    rawConfig,
    configDescriptor,
    rawManifest,
    configFile: async () =>
      JSON.parse(Buffer.from(await rawConfig()).toString('utf8')) as ConfigFile,
    manifest: async () =>
      JSON.parse(Buffer.from(await rawManifest()).toString('utf8')) as ImageManifest,
    digest: async () => digestOf(await rawManifest()),
    size: async () => (await rawManifest()).length,
    layers: () => Promise.resolve(layers),
  };
}

/** selfSignedCert writes a key and certificate for 127.0.0.1 into `dir` with openssl and reads them. */
export async function selfSignedCert(dir: string): Promise<{ key: Buffer; cert: Buffer }> {
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  return { key: await readFile(join(dir, 'key.pem')), cert: await readFile(join(dir, 'cert.pem')) };
}

/** HttpsRegistry is an in-memory @lading/registry served over https with a self-signed certificate. */
export interface HttpsRegistry {
  readonly server: HttpsServer;
  /** host is `127.0.0.1:<port>`. */
  readonly host: string;
  /** ca is the certificate to trust. */
  readonly ca: Buffer;
  close(): Promise<void>;
}

/** httpsRegistry starts a {@link HttpsRegistry}; its certificate lives in a temporary directory `close` removes. */
export async function httpsRegistry(prefix: string): Promise<HttpsRegistry> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const { key, cert: ca } = await selfSignedCert(dir);
  const registry = createRegistry({ storage: memoryStorage() });
  const server = createHttpsServer({ key, cert: ca }, registry.handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    server,
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    ca,
    close: async () => {
      try {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
        await registry.close();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}
