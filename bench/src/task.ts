// Child process: runs one lading operation and prints `RESULT <json>` with
// its duration and the process's peak RSS. One process per measurement, so
// every run starts cold and memory figures are the operation's own.
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { pipeline } from 'node:stream/promises';
import * as core from '@lading/core';
import * as layers from '@lading/layers';
import * as remote from '@lading/remote';
import { compressBlocks, warmUp } from './compress-blocks.js';
import { CountingSource } from './generate.js';
import { now } from './util.js';

type Task =
  | {
      kind: 'floor-blocks';
      dir: string;
      compression: 'gzip' | 'zstd';
      level: number;
      threads?: number;
    }
  | {
      kind: 'stage';
      stage: 'tar' | 'tar+sha256' | 'layer';
      dir: string;
      level: number;
      workers: number;
    }
  | { kind: 'build-push'; dir: string; ref: string; level: number; workers: number }
  | { kind: 'push-directory'; dir: string; ref: string }
  | { kind: 'pull-extract'; src: string; out: string }
  | { kind: 'auth-fail'; ref: string; username: string; password: string; fileSize: number };

/** A sink that counts bytes and drops them (a /dev/null that knows what it saw). */
function sink(): Writable & { bytes: number } {
  const w = new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk: Buffer, _enc, cb) {
      w.bytes += chunk.length;
      cb();
    },
  }) as Writable & { bytes: number };
  w.bytes = 0;
  return w;
}

function hashingSink(): Writable & { bytes: number; digest: () => string } {
  const h = createHash('sha256');
  const w = new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk: Buffer, _enc, cb) {
      w.bytes += chunk.length;
      h.update(chunk);
      cb();
    },
  }) as Writable & { bytes: number; digest: () => string };
  w.bytes = 0;
  w.digest = () => h.digest('hex');
  return w;
}

/**
 * floorBlocks is the compression alone, the way layers compress by default:
 * independent 1 MiB blocks (gzip members or zstd frames) of the tar held in
 * memory, on one thread, or with `threads` on that many worker threads at
 * once (block i on thread i mod threads) — the floor over all cores,
 * measured rather than assumed to scale.
 */
async function floorBlocks(
  t: Extract<Task, { kind: 'floor-blocks' }>,
): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of layers.directoryTar(t.dir)) chunks.push(c as Buffer);
  const length = chunks.reduce((n, c) => n + c.length, 0);
  const shared = new SharedArrayBuffer(length);
  const tar = new Uint8Array(shared);
  let at = 0;
  for (const c of chunks) {
    tar.set(c, at);
    at += c.length;
  }
  chunks.length = 0;
  const threads = t.threads ?? 1;
  if (threads === 1) {
    warmUp(tar, t.compression, t.level);
    const t0 = now();
    const out = compressBlocks(tar, t.compression, t.level);
    return { ms: now() - t0, tarBytes: length, outBytes: out, threads };
  }
  const workers = Array.from(
    { length: threads },
    (_, first) =>
      new Worker(new URL('./floor-worker.js', import.meta.url), {
        workerData: { tar: shared, length, first, stride: threads, ...t },
      }),
  );
  const answer = (w: Worker): Promise<unknown> =>
    new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
  await Promise.all(workers.map(answer));
  const t0 = now();
  const outs = workers.map(answer);
  for (const w of workers) w.postMessage('go');
  const out = (await Promise.all(outs)).reduce<number>((n, x) => n + (x as number), 0);
  const ms = now() - t0;
  await Promise.all(workers.map((w) => w.terminate()));
  return { ms, tarBytes: length, outBytes: out, threads };
}

async function stage(t: Extract<Task, { kind: 'stage' }>): Promise<Record<string, unknown>> {
  const t0 = now();
  if (t.stage === 'tar') {
    const s = sink();
    await pipeline(layers.directoryTar(t.dir), s);
    return { ms: now() - t0, bytes: s.bytes };
  }
  if (t.stage === 'tar+sha256') {
    const s = hashingSink();
    await pipeline(layers.directoryTar(t.dir), s);
    return { ms: now() - t0, bytes: s.bytes, digest: s.digest() };
  }
  // The whole layer pipeline (tar → sha256 → gzip → sha256) without HTTP.
  const layer = layers.layerFromDirectory(t.dir, { level: t.level, workers: t.workers });
  const s = sink();
  await pipeline(layer.compressed(), s);
  const digest = await layer.digest();
  return { ms: now() - t0, bytes: s.bytes, digest };
}

async function push(
  ref: string,
  image: core.Image,
  options: remote.WriteOptions = {},
): Promise<Record<string, unknown>> {
  const t0 = now();
  const handle = remote.write(ref, image, options);
  await handle.authorized;
  const authMs = now() - t0;
  const result = await handle.done;
  return { ms: now() - t0, authMs, digest: result.digest };
}

async function buildPush(
  t: Extract<Task, { kind: 'build-push' }>,
): Promise<Record<string, unknown>> {
  const layer = layers.layerFromDirectory(t.dir, { level: t.level, workers: t.workers });
  const image = core.appendLayers(core.emptyImage(), layer);
  const r = await push(t.ref, image);
  return { ...r, size: await layer.size() };
}

/** pushDirectory pushes a directory layer with lading's defaults (every core, block gzip). */
async function pushDirectory(
  t: Extract<Task, { kind: 'push-directory' }>,
): Promise<Record<string, unknown>> {
  const layer = layers.layerFromDirectory(t.dir);
  const r = await push(t.ref, core.appendLayers(core.emptyImage(), layer));
  return { ...r, size: await layer.size() };
}

async function pulled(src: string): Promise<core.Image> {
  const m = await remote.pull(src);
  if (core.isImageIndex(m)) throw new Error(`${src} is an index`);
  return m;
}

async function pullExtract(
  t: Extract<Task, { kind: 'pull-extract' }>,
): Promise<Record<string, unknown>> {
  await rm(t.out, { recursive: true, force: true });
  // Looked up at run time: extraction is being added to @lading/layers.
  const extract = (layers as Record<string, unknown>).extract;
  const t0 = now();
  const image = await pulled(t.src);
  if (typeof extract === 'function') {
    await (extract as (layers: readonly core.Layer[], dir: string) => Promise<unknown>)(
      await image.layers(),
      t.out,
    );
    return { ms: now() - t0, extracted: true };
  }
  // No extraction in @lading/layers yet: download, verify and gunzip only.
  let bytes = 0;
  for (const layer of await image.layers()) {
    const s = sink();
    await pipeline(layer.uncompressed(), s);
    bytes += s.bytes;
  }
  return { ms: now() - t0, extracted: false, tarBytes: bytes };
}

async function authFail(t: Extract<Task, { kind: 'auth-fail' }>): Promise<Record<string, unknown>> {
  const source = new CountingSource(t.fileSize);
  const layer = layers.streamLayer(source);
  const image = core.appendLayers(core.emptyImage(), layer);
  const t0 = now();
  const handle = remote.write(t.ref, image, {
    auth: { username: t.username, password: t.password },
    useStoredCredentials: false,
  });
  let code: string | undefined;
  let authorized = false;
  try {
    await handle.authorized;
    authorized = true;
  } catch (err) {
    code = core.isLadingError(err) ? err.code : String(err);
  }
  const ms = now() - t0;
  const bytesAtRejection = source.produced;
  let doneCode: string | undefined;
  try {
    await handle.done;
  } catch (err) {
    doneCode = core.isLadingError(err) ? err.code : String(err);
  }
  return {
    ms,
    authorized,
    code,
    doneCode,
    bytesAtRejection,
    bytesAtDone: source.produced,
    doneMs: now() - t0,
  };
}

async function main(): Promise<void> {
  const t = JSON.parse(process.argv[2] ?? '{}') as Task;
  let r: Record<string, unknown>;
  switch (t.kind) {
    case 'stage':
      r = await stage(t);
      break;
    case 'build-push':
      r = await buildPush(t);
      break;
    case 'push-directory':
      r = await pushDirectory(t);
      break;
    case 'floor-blocks':
      r = await floorBlocks(t);
      break;
    case 'pull-extract':
      r = await pullExtract(t);
      break;
    case 'auth-fail':
      r = await authFail(t);
      break;
  }
  process.stdout.write(
    `RESULT ${JSON.stringify({ ...r, maxRssKiB: process.resourceUsage().maxRSS })}\n`,
  );
  // Keep-alive sockets and worker pools would hold the process open.
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
