// Child process: a bounded load generator for a registry on loopback. It
// uploads `count` distinct blobs, downloads them again, then reads one
// manifest `manifestCount` times, each with `concurrency` requests in flight,
// and prints `RESULT <json>` with throughputs.
import { createHash, randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import { bounded, drain, now } from './util.js';

interface LoadOptions {
  readonly url: string;
  readonly repo: string;
  readonly count: number;
  readonly blobSize: number;
  readonly concurrency: number;
  readonly manifestCount: number;
  readonly manifestConcurrency: number;
}

const ociManifest = 'application/vnd.oci.image.manifest.v1+json';

async function upload(
  pool: Pool,
  base: string,
  repo: string,
  blob: Buffer,
  digest: string,
): Promise<void> {
  const post = await pool.request({ method: 'POST', path: `/v2/${repo}/blobs/uploads/` });
  await drain(post.body);
  const location = post.headers.location;
  if (post.statusCode !== 202 || typeof location !== 'string') {
    throw new Error(`POST upload: ${post.statusCode}`);
  }
  const u = new URL(location, base);
  u.searchParams.set('digest', digest);
  const put = await pool.request({
    method: 'PUT',
    path: u.pathname + u.search,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.length) },
    body: blob,
  });
  await drain(put.body);
  if (put.statusCode !== 201) throw new Error(`PUT upload: ${put.statusCode}`);
}

async function main(): Promise<void> {
  const o = JSON.parse(process.argv[2] ?? '{}') as LoadOptions;
  const pool = new Pool(o.url, { connections: Math.max(o.concurrency, o.manifestConcurrency) });
  // Distinct blobs (a counter in the first bytes), made before the clock starts.
  const base = randomBytes(o.blobSize);
  const blobs = Array.from({ length: o.count }, (_, i) => {
    const b = Buffer.from(base);
    b.writeUInt32BE(i, 0);
    b.writeUInt32BE(process.pid, 4);
    return { b, digest: `sha256:${createHash('sha256').update(b).digest('hex')}` };
  });
  let t0 = now();
  await bounded(o.count, o.concurrency, async (i) => {
    const x = blobs[i];
    if (x !== undefined) await upload(pool, o.url, o.repo, x.b, x.digest);
  });
  const uploadMs = now() - t0;

  t0 = now();
  let downloaded = 0;
  await bounded(o.count, o.concurrency, async (i) => {
    const x = blobs[i];
    if (x === undefined) return;
    const res = await pool.request({ method: 'GET', path: `/v2/${o.repo}/blobs/${x.digest}` });
    const n = await drain(res.body);
    if (res.statusCode !== 200 || n !== x.b.length)
      throw new Error(`GET blob: ${res.statusCode}, ${n} bytes`);
    downloaded += n;
  });
  const downloadMs = now() - t0;

  const config = Buffer.from(
    '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
  );
  const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
  await upload(pool, o.url, o.repo, config, configDigest);
  const first = blobs[0];
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ociManifest,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers:
        first === undefined
          ? []
          : [
              {
                mediaType: 'application/vnd.oci.image.layer.v1.tar',
                digest: first.digest,
                size: first.b.length,
              },
            ],
    }),
  );
  const put = await pool.request({
    method: 'PUT',
    path: `/v2/${o.repo}/manifests/latest`,
    headers: { 'content-type': ociManifest },
    body: manifest,
  });
  const putBody = await drain(put.body);
  if (put.statusCode !== 201) throw new Error(`PUT manifest: ${put.statusCode} (${putBody} bytes)`);
  t0 = now();
  await bounded(o.manifestCount, o.manifestConcurrency, async () => {
    const res = await pool.request({
      method: 'GET',
      path: `/v2/${o.repo}/manifests/latest`,
      headers: { accept: ociManifest },
    });
    const n = await drain(res.body);
    if (res.statusCode !== 200 || n !== manifest.length)
      throw new Error(`GET manifest: ${res.statusCode}`);
  });
  const manifestMs = now() - t0;
  await pool.close();
  const total = o.count * o.blobSize;
  process.stdout.write(
    `RESULT ${JSON.stringify({
      uploadMBps: total / 1e6 / (uploadMs / 1000),
      downloadMBps: downloaded / 1e6 / (downloadMs / 1000),
      manifestRps: o.manifestCount / (manifestMs / 1000),
      uploadMs,
      downloadMs,
      manifestMs,
      maxRssKiB: process.resourceUsage().maxRSS,
    })}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
