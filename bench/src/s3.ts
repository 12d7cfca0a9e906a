// The S3 storage bench: blob upload and download throughput through
// @lading/registry on S3 storage (OpenStack Swift's S3 API from s3-up.sh,
// `lading serve --storage s3://…` in its own process, downloads answered by
// 307 to presigned URLs), beside @lading/registry on filesystem storage, the
// Debian docker-registry (filesystem), and the S3 store itself through the
// AWS SDK (the floor). Writes its own section of RESULTS.md.
//
//   node bench/dist/s3.js [--quick] [--runs=N] [--count=N] [--blob-mb=N] [--concurrency=N]
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  CreateBucketCommand,
  GetObjectCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { startS3, type S3Server } from '@lading/testing';
import { Agent, request } from 'undici';
import { log } from './context.js';
import { markdown, plain, type Row, type Section } from './report.js';
import {
  processCpuMs,
  startDebianRegistry,
  startLadingRegistry,
  type BenchRegistry,
} from './registries.js';
import { benchDir, bounded, drain, fmtBytes, fmtStat, MiB, now, stat } from './util.js';

interface Options {
  readonly runs: number;
  readonly count: number;
  readonly blobSize: number;
  readonly concurrency: number;
}

interface Blob {
  readonly bytes: Buffer;
  readonly digest: string;
}

type Target = 'fs' | 's3' | 'debian' | 'raw';
const labels: Record<Target, string> = {
  fs: '@lading/registry, filesystem storage',
  s3: '@lading/registry, S3 storage (lading serve --storage s3://, 307 to presigned GETs)',
  debian: 'Debian docker-registry, filesystem storage',
  raw: 'the S3 store itself (AWS SDK PutObject / GetObject)',
};

function parse(argv: readonly string[]): Options {
  const flags = new Map<string, string>();
  for (const a of argv) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (m === null) throw new Error(`unknown argument ${a}`);
    flags.set(m[1] ?? '', m[2] ?? 'true');
  }
  const quick = flags.get('quick') === 'true';
  return {
    runs: Number(flags.get('runs') ?? 1),
    count: Number(flags.get('count') ?? (quick ? 8 : 16)),
    blobSize: Number(flags.get('blob-mb') ?? (quick ? 16 : 64)) * MiB,
    concurrency: Number(flags.get('concurrency') ?? 4),
  };
}

/** throughput answers MB/s of pushing then pulling every blob through the registry at `url`. */
async function viaRegistry(
  url: string,
  blobs: readonly Blob[],
  o: Options,
  dispatcher: Agent,
): Promise<{ up: number; down: number; redirects: number }> {
  const repo = `bench/s3-${Date.now()}`;
  let t0 = now();
  await bounded(blobs.length, o.concurrency, async (i) => {
    const b = blobs[i]!;
    const post = await request(`${url}/v2/${repo}/blobs/uploads/`, {
      method: 'POST',
      dispatcher,
    });
    await drain(post.body);
    const location = post.headers.location;
    if (post.statusCode !== 202 || typeof location !== 'string')
      throw new Error(`POST upload: ${post.statusCode}`);
    const u = new URL(location, url);
    u.searchParams.set('digest', b.digest);
    const put = await request(u, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: b.bytes,
      dispatcher,
    });
    const text = await put.body.text();
    if (put.statusCode !== 201) throw new Error(`PUT upload: ${put.statusCode} ${text}`);
  });
  const up = (blobs.length * o.blobSize) / 1e6 / ((now() - t0) / 1000);
  let redirects = 0;
  t0 = now();
  await bounded(blobs.length, o.concurrency, async (i) => {
    const b = blobs[i]!;
    let res = await request(`${url}/v2/${repo}/blobs/${b.digest}`, { dispatcher });
    if (res.statusCode === 307) {
      await drain(res.body);
      redirects++;
      res = await request(String(res.headers.location), { dispatcher });
    }
    const n = await drain(res.body);
    if (res.statusCode !== 200 || n !== b.bytes.length)
      throw new Error(`GET blob: ${res.statusCode}, ${n} bytes`);
  });
  const down = (blobs.length * o.blobSize) / 1e6 / ((now() - t0) / 1000);
  return { up, down, redirects };
}

/** viaSdk is the floor: the same objects straight into and out of the bucket. */
async function viaSdk(
  client: S3Client,
  bucket: string,
  blobs: readonly Blob[],
  o: Options,
): Promise<{ up: number; down: number }> {
  const prefix = `raw-${Date.now()}`;
  let t0 = now();
  await bounded(blobs.length, o.concurrency, async (i) => {
    const b = blobs[i]!;
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `${prefix}/${b.digest}`,
        Body: b.bytes,
        ContentLength: b.bytes.length,
      }),
    );
  });
  const up = (blobs.length * o.blobSize) / 1e6 / ((now() - t0) / 1000);
  t0 = now();
  await bounded(blobs.length, o.concurrency, async (i) => {
    const b = blobs[i]!;
    const r = await client.send(
      new GetObjectCommand({ Bucket: bucket, Key: `${prefix}/${b.digest}` }),
    );
    const n = await drain(r.Body as AsyncIterable<unknown>);
    if (n !== b.bytes.length) throw new Error(`GetObject: ${n} bytes`);
  });
  const down = (blobs.length * o.blobSize) / 1e6 / ((now() - t0) / 1000);
  return { up, down };
}

/** startS3Registry runs `lading serve --storage s3://BUCKET/PREFIX` and answers its URL. */
function startS3Registry(s3: S3Server, bucket: string): Promise<BenchRegistry> {
  const lading = join(benchDir, '..', 'packages', 'cli', 'bin', 'lading.js');
  const child = spawn(
    process.execPath,
    [
      lading,
      'serve',
      '--port',
      '0',
      '--storage',
      `s3://${bucket}/reg-${Date.now()}`,
      '--s3-endpoint',
      s3.endpoint,
      '--s3-path-style',
    ],
    {
      env: {
        ...process.env,
        AWS_ACCESS_KEY_ID: s3.accessKeyId,
        AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
        AWS_REGION: s3.region,
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => {
      reject(new Error(`lading serve exited with ${String(code)}`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const url = /http:\/\/[^\s]+/.exec(line)?.[0];
      if (url === undefined) return;
      resolve({
        kind: 'lading',
        url,
        host: new URL(url).host,
        cpuMs: () => processCpuMs(child.pid ?? 0),
        stop: async () => {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
          return undefined;
        },
      });
    });
  });
}

const start = '<!-- bench:s3:start -->';
const end = '<!-- bench:s3:end -->';

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const started = new Date();
  const loadBefore = loadavg();
  log(`starting the S3 store (s3-up.sh)`);
  const s3 = await startS3();
  const bucket = 'lading-bench';
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  const dispatcher = new Agent({ connections: o.concurrency * 2 });
  const results = new Map<Target, { up: number[]; down: number[] }>();
  const add = (t: Target, up: number, down: number): void => {
    const e = results.get(t) ?? { up: [], down: [] };
    e.up.push(up);
    e.down.push(down);
    results.set(t, e);
  };
  let redirects = 0;
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    // Distinct blobs, made before any clock starts.
    const base = randomBytes(o.blobSize);
    for (let run = 0; run < o.runs; run++) {
      const blobs = Array.from({ length: o.count }, (_, i) => {
        const bytes = Buffer.from(base);
        bytes.writeUInt32BE(i, 0);
        bytes.writeUInt32BE(run, 4);
        bytes.writeUInt32BE(process.pid, 8);
        return { bytes, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
      });
      const starters: [Target, () => Promise<BenchRegistry>][] = [
        ['fs', () => startLadingRegistry({ storage: 'filesystem' })],
        ['s3', () => startS3Registry(s3, bucket)],
        ['debian', () => startDebianRegistry()],
      ];
      for (const [target, startRegistry] of starters) {
        log(`run ${run + 1}/${o.runs}: ${labels[target]}`);
        const reg = await startRegistry();
        try {
          const r = await viaRegistry(reg.url, blobs, o, dispatcher);
          if (target === 's3') redirects += r.redirects;
          add(target, r.up, r.down);
        } finally {
          await reg.stop();
        }
      }
      log(`run ${run + 1}/${o.runs}: ${labels.raw}`);
      const raw = await viaSdk(client, bucket, blobs, o);
      add('raw', raw.up, raw.down);
    }
  } finally {
    await dispatcher.close();
    client.destroy();
    await s3.stop();
  }
  const loadAfter = loadavg();
  const mbps = (v: number): string => `${v.toFixed(0)} MB/s`;
  const rows: Row[] = [];
  const fs = results.get('fs');
  for (const dir of ['up', 'down'] as const) {
    for (const t of ['s3', 'fs', 'debian', 'raw'] as const) {
      const e = results.get(t);
      if (e === undefined) continue;
      const ratio =
        t === 's3' && fs !== undefined ? stat(e[dir]).median / stat(fs[dir]).median : undefined;
      rows.push({
        name: `blob ${dir === 'up' ? 'upload (POST + PUT)' : 'download (GET)'}: ${labels[t]}`,
        value: fmtStat(stat(e[dir]), mbps),
        ...(ratio === undefined ? {} : { ratio: `${ratio.toFixed(2)}× filesystem` }),
        data: e[dir],
      });
    }
  }
  const section: Section = {
    id: 's3',
    title: 'S3 storage: blob upload and download throughput',
    rows,
    notes: [
      `${o.count} distinct blobs of ${fmtBytes(o.blobSize)}, ${o.concurrency} at once, ${o.runs} run(s); the client is the bench process (undici), each registry runs in its own process, the S3 store is OpenStack Swift 2.30 (s3api, one node, one replica, data on the local disk) from s3-up.sh; everything shares this machine's cores, so these are whole-machine figures.`,
      `S3 uploads: each PUT body is cut into 8 MiB multipart parts (two uploading while the next fills), completed into a staging object, then server-side copied to the content-addressed key (the copy is a full data copy in Swift). Downloads: ${redirects} blob GETs were answered with 307 and read from the presigned URL (the registry never carries the bytes).`,
      `load average (1/5/15 min) before: ${loadBefore.map((v) => v.toFixed(2)).join(' / ')}, after: ${loadAfter.map((v) => v.toFixed(2)).join(' / ')} (other work shared the machine).`,
    ],
    ranAt: new Date().toISOString(),
  };
  process.stdout.write(plain([section]) + '\n');
  const file = join(benchDir, 'RESULTS.md');
  let text = await readFile(file, 'utf8');
  const generated = `${start}\n<!-- generated by \`node bench/dist/s3.js\`; edit outside the markers -->\n\nRun of ${started.toISOString().replace(/\.\d+Z$/, 'Z')}.\n\n${markdown([section])}${end}`;
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  text =
    i >= 0 && j > i
      ? text.slice(0, i) + generated + text.slice(j + end.length)
      : `${text.trimEnd()}\n\n## S3 storage\n\n${generated}\n`;
  await writeFile(file, text);
  log('wrote the S3 section of bench/RESULTS.md');
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
