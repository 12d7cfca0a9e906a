// Throughput and memory benchmark for @lading/layers. Not a test.
// Build and run (it imports the built package by its own name):
//   npx tsc -b packages/layers && npx tsc -p packages/layers/bench
//   node packages/layers/bench/dist/throughput.js [corpusDir] [--mem [--stream]]
// Builds a ~200 MB corpus (mixed text-like and random files) under
// $TMPDIR/lading-bench-corpus unless a directory is given, then prints MB/s
// for each pipeline and the ratios docs/design.md and bench/ set as targets.
import { createReadStream, createWriteStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { createGzipStream, directoryTar, layerFromDirectory, streamLayer } from '@lading/layers';
import type { CompressionOptions } from '@lading/layers';

const args = process.argv.slice(2);
const mem = args.includes('--mem');
const corpus = args.find((a) => !a.startsWith('--')) ?? join(tmpdir(), 'lading-bench-corpus');

function textish(n: number, seed: number): Buffer {
  const words = [
    'layer',
    'digest',
    'tar',
    'gzip',
    'stream',
    'image',
    'oci',
    'registry',
    'node',
    'const',
    '{',
    '}',
    '\n',
  ];
  const out = Buffer.allocUnsafe(n);
  let x = seed;
  let i = 0;
  while (i < n) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const w = words[x % words.length] ?? '';
    i += out.write(`${w} `, i);
  }
  return out;
}

function randomish(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b.writeUInt32LE(x, Math.min(i, n - 4));
  }
  return b;
}

function makeCorpus(dir: string): void {
  if (existsSync(join(dir, '.done'))) return;
  let total = 0;
  let seed = 1;
  // Many small files (source-tree like), some medium, a few large.
  for (let d = 0; d < 40; d++) {
    const sub = join(dir, `pkg${d}`, 'src');
    mkdirSync(sub, { recursive: true });
    for (let f = 0; f < 100; f++) {
      const n = 2000 + ((seed * 7919) % 30000);
      writeFileSync(join(sub, `file${f}.js`), textish(n, seed++));
      total += n;
    }
  }
  mkdirSync(join(dir, 'media'), { recursive: true });
  for (let f = 0; f < 20; f++) {
    const n = 2 * 1024 * 1024;
    writeFileSync(join(dir, 'media', `img${f}.bin`), randomish(n, seed++));
    total += n;
  }
  mkdirSync(join(dir, 'data'), { recursive: true });
  for (let f = 0; f < 4; f++) {
    const n = 25 * 1024 * 1024;
    writeFileSync(join(dir, 'data', `big${f}.txt`), textish(n, seed++));
    total += n;
  }
  writeFileSync(join(dir, '.done'), String(total));
}

function sink(): { w: Writable; bytes: () => number } {
  let n = 0;
  const h = createHash('sha256');
  const w = new Writable({
    highWaterMark: 1 << 20,
    write(c: Buffer, _e, cb) {
      n += c.length;
      h.update(c);
      cb();
    },
  });
  return { w, bytes: () => n };
}

async function time(label: string, bytesIn: number, fn: () => Promise<number>): Promise<number> {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const out = await fn();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  // CPU seconds of the whole process (all threads): meaningful on a shared machine.
  const cpu = (c.user + c.system) / 1e6;
  const mbs = bytesIn / 1e6 / s;
  console.log(
    `${label.padEnd(44)} wall ${s.toFixed(2).padStart(6)} s ${mbs.toFixed(1).padStart(6)} MB/s  cpu ${cpu.toFixed(2).padStart(6)} s  out ${(out / 1e6).toFixed(1)} MB`,
  );
  return s;
}

async function main(): Promise<void> {
  if (mem) {
    await memory();
    return;
  }
  mkdirSync(corpus, { recursive: true });
  makeCorpus(corpus);
  // Tar once to a file, so "plain gzip" reads the same bytes from disk.
  const tarPath = join(tmpdir(), 'lading-bench.tar');
  const s0 = sink();
  await pipeline(directoryTar(corpus), s0.w);
  const tarBytes = s0.bytes();
  await pipeline(directoryTar(corpus), createWriteStream(tarPath));
  console.log(`corpus ${corpus}: tar ${(tarBytes / 1e6).toFixed(1)} MB`);

  const r: Record<string, number> = {};
  r.walk = await time('directory → tar → sha256 (no gzip)', tarBytes, async () => {
    const s = sink();
    await pipeline(directoryTar(corpus), s.w);
    return s.bytes();
  });
  const modes: [string, CompressionOptions][] = [
    ['stream L6', { level: 6 }],
    ['blocks L6 w1', { level: 6, gzipMode: 'blocks', workers: 1 }],
    ['blocks L6 w2', { level: 6, workers: 2 }],
  ];
  for (const [name, opts] of modes) {
    r[`gzip ${name}`] = await time(`plain gzip of the tar file (${name})`, tarBytes, async () => {
      const s = sink();
      await pipeline(
        createReadStream(tarPath, { highWaterMark: 1 << 20 }),
        createGzipStream(opts),
        s.w,
      );
      return s.bytes();
    });
    r[`layer ${name}`] = await time(`directory → gzip layer (${name})`, tarBytes, async () => {
      const layer = layerFromDirectory(corpus, opts);
      const s = sink();
      await pipeline(layer.compressed(), s.w);
      await layer.digest();
      return s.bytes();
    });
  }
  const v = (k: string): number => r[k] ?? Number.NaN;
  console.log('\nratios (wall time):');
  for (const [m] of modes) {
    console.log(`  layer/gzip ${m.padEnd(14)} ${(v(`layer ${m}`) / v(`gzip ${m}`)).toFixed(2)}×`);
  }
  const w2 = v('gzip blocks L6 w1') / v('gzip blocks L6 w2');
  console.log(`  gzip w2 speed-up vs w1 (blocks)   ${w2.toFixed(2)}×`);
  const lw2 = v('layer stream L6') / v('layer blocks L6 w2');
  console.log(`  layer w2 speed-up vs stream L6    ${lw2.toFixed(2)}×`);
}

async function memory(): Promise<void> {
  // A 2 GiB tar generated on the fly (one large file entry), through a
  // stream layer, gzip (blocks, 2 workers, level 1) and sha256, never stored.
  const size = 2 * 1024 * 1024 * 1024;
  const chunk = textish(4 * 1024 * 1024, 7);
  async function* gen(): AsyncGenerator<Buffer> {
    await Promise.resolve();
    const h = Buffer.alloc(512);
    h.write('big.bin', 0);
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
    h.write('00000000000\0', 136);
    h.fill(0x20, 148, 156);
    h[156] = 0x30;
    h.write('ustar\u000000', 257);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    yield h;
    for (let off = 0; off < size; off += chunk.length) {
      chunk[0] = off & 0xff;
      yield Buffer.from(chunk);
    }
    yield Buffer.alloc(1024);
  }
  let peak = 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 50);
  const opts: CompressionOptions = args.includes('--stream')
    ? { level: 1 }
    : { level: 1, workers: 2 };
  console.log(
    'options',
    JSON.stringify(opts),
    'rss before',
    (process.memoryUsage().rss / 1048576).toFixed(1),
    'MiB',
  );
  const layer = streamLayer(gen(), opts);
  const s = sink();
  const t0 = Date.now();
  await pipeline(layer.compressed(), s.w);
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage().rss);
  console.log(
    `2 GiB stream layer: ${(Date.now() - t0) / 1000} s, blob ${(s.bytes() / 1e6).toFixed(1)} MB, digest ${await layer.digest()}`,
  );
  console.log(`peak RSS ${(peak / 1024 / 1024).toFixed(1)} MiB`, process.memoryUsage());
}

await main();
