import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import {
  MediaType,
  digestOf,
  type ConfigFile,
  type Descriptor,
  type Digest,
  type Image,
  type ImageManifest,
  type Layer,
  type Platform,
} from '@lading/core';

export const run = promisify(execFile);

/** tarOf builds a real tar archive holding `files`. */
export async function tarOf(files: Record<string, string | Buffer>): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, content] of Object.entries(files)) {
    pack.entry({ name, mtime: new Date(0), mode: 0o644 }, content);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** tempDir makes a scratch directory removed by the returned cleanup. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'lading-layout-test-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * OnceLayer is a single-pass gzip layer: digest, diffId and size settle
 * only when compressed() has been read to its end, like a stream layer.
 */
export class OnceLayer implements Layer {
  readonly mediaType = MediaType.OciLayerGzip;
  readonly #tar: Buffer;
  #consumed = false;
  readonly #values: Promise<{ digest: Digest; size: number }>;
  #settle: ((v: { digest: Digest; size: number }) => void) | undefined;

  constructor(tarBytes: Buffer) {
    this.#tar = tarBytes;
    this.#values = new Promise((resolve) => (this.#settle = resolve));
  }
  async digest() {
    return (await this.#values).digest;
  }
  async diffId() {
    await this.#values;
    return digestOf(this.#tar);
  }
  async size() {
    return (await this.#values).size;
  }
  compressed(): Readable {
    if (this.#consumed) throw new Error('consumed');
    this.#consumed = true;
    const gz = gzipSync(this.#tar);
    const settle = this.#settle;
    let n = 0;
    const counting = new Transform({
      transform(chunk: Buffer, _e, cb: TransformCallback) {
        n += chunk.length;
        cb(null, chunk);
      },
      flush(cb) {
        settle?.({ digest: digestOf(gz), size: n });
        cb();
      },
    });
    pipeline(Readable.from([gz.subarray(0, 64), gz.subarray(64)]), counting).catch(() => undefined);
    return counting;
  }
  uncompressed(): Readable {
    return Readable.from([this.#tar]);
  }
}

/** lazyImage is a minimal Image over layers whose values may still be pending. */
export function lazyImage(
  layers: Layer[],
  platform: Platform = { os: 'linux', architecture: 'amd64' },
  mediaType: string = MediaType.OciManifest,
): Image {
  const docker = mediaType === MediaType.DockerManifest;
  const rawConfig = async () => {
    const cfg: ConfigFile = {
      ...platform,
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: await Promise.all(layers.map((l) => l.diffId())) },
      history: layers.map(() => ({ created_by: 'lading test' })),
    };
    return Buffer.from(JSON.stringify(cfg));
  };
  const configDescriptor = async (): Promise<Descriptor> => {
    const raw = await rawConfig();
    return {
      mediaType: docker ? MediaType.DockerConfig : MediaType.OciConfig,
      digest: digestOf(raw),
      size: raw.length,
    };
  };
  const manifest = async (): Promise<ImageManifest> => ({
    schemaVersion: 2,
    mediaType,
    config: await configDescriptor(),
    layers: await Promise.all(
      layers.map(async (l) => ({
        mediaType: l.mediaType,
        digest: await l.digest(),
        size: await l.size(),
      })),
    ),
  });
  const rawManifest = async () => Buffer.from(JSON.stringify(await manifest()));
  return {
    mediaType,
    manifest,
    rawManifest,
    configFile: async () => JSON.parse((await rawConfig()).toString()) as ConfigFile,
    rawConfig,
    configDescriptor,
    digest: async () => digestOf(await rawManifest()),
    size: async () => (await rawManifest()).length,
    layers: () => Promise.resolve(layers),
  };
}

/** tarNames lists the member names of a tar file as tar-stream reads them. */
export async function tarNames(file: string): Promise<string[]> {
  const names: string[] = [];
  const extract = tar.extract();
  const done = (async () => {
    for await (const entry of extract) {
      names.push(entry.header.name);
      entry.resume();
    }
  })();
  await pipeline(createReadStream(file), extract);
  await done;
  return names;
}
