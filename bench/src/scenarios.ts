import { readFileSync } from 'node:fs';
import { lstat, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseReference } from '@lading/core';
import { writeGeneratedDirectory } from './generate.js';
import { log, type Context } from './context.js';
import { summariseMainThread } from './profile.js';
import {
  registryLabel,
  startDebianRegistry,
  startLadingRegistry,
  startRegistry,
  type BenchRegistry,
  type RegistryKind,
} from './registries.js';
import type { Row, Section } from './report.js';
import {
  benchDir,
  errorMessage,
  fmtBytes,
  fmtSec,
  fmtStat,
  ladingBin,
  MiB,
  run,
  runChecked,
  runTask,
  stat,
  workDir,
  type CommandResult,
  type Stat,
} from './util.js';

const registryKinds: readonly RegistryKind[] = ['distribution', 'lading'];

function ratioText(s: Stat): string {
  if (Number.isNaN(s.median)) return 'n/a';
  const f = (v: number): string => `${v.toFixed(2)}×`;
  return s.samples.length <= 1 ? f(s.median) : `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

function secs(s: Stat): string {
  return fmtStat(s, fmtSec);
}

function missingRow(name: string, what: string): Row {
  return { name, value: `n/a (missing: ${what})` };
}

/** ratios pairs samples of the same run: a[i] / b[i]. */
function ratios(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x !== undefined && y !== undefined && y > 0) out.push(x / y);
  }
  return out;
}

async function withRegistry<T>(
  start: () => Promise<BenchRegistry>,
  fn: (r: BenchRegistry) => Promise<T>,
): Promise<T> {
  const r = await start();
  try {
    return await fn(r);
  } finally {
    await r.stop();
  }
}

/** peerPush runs `umoci init/new/insert` then `skopeo copy` to the registry; answers wall ms. */
export async function peerPush(
  ctx: Context,
  host: string,
  repo: string,
  dir: string = ctx.corpus.dir,
): Promise<{ ms: number; size: number }> {
  const layoutDir = join(workDir, 'umoci-push');
  await rm(layoutDir, { recursive: true, force: true });
  let ms = 0;
  ms += (await runChecked('umoci', ['init', '--layout', layoutDir])).ms;
  ms += (await runChecked('umoci', ['new', '--image', `${layoutDir}:bench`])).ms;
  ms += (
    await runChecked('umoci', ['insert', '--rootless', '--image', `${layoutDir}:bench`, dir, '/'])
  ).ms;
  ms += (
    await runChecked('skopeo', [
      'copy',
      '--quiet',
      '--dest-tls-verify=false',
      `oci:${layoutDir}:bench`,
      `docker://${host}/${repo}:latest`,
    ])
  ).ms;
  // The layer umoci wrote is the layout's largest blob.
  let size = 0;
  const blobs = join(layoutDir, 'blobs', 'sha256');
  for (const name of await readdir(blobs))
    size = Math.max(size, (await lstat(join(blobs, name))).size);
  return { ms, size };
}

/** Scenario 1: build a directory into a layer and push it. */
export async function buildPush(ctx: Context): Promise<Section> {
  const { runs, level } = ctx.config;
  const rows: Row[] = [];
  const notes: string[] = [];
  const floor: number[] = [];
  const floor2: number[] = [];
  const times = new Map<string, number[]>();
  const push = (key: string, v: number): void => {
    const a = times.get(key) ?? [];
    a.push(v);
    times.set(key, a);
  };
  const peerOk = ctx.peers.skopeo && ctx.peers.umoci;
  for (let i = 0; i < runs; i++) {
    log(`build+push run ${i + 1}/${runs}: gzip floor, 1 core and 2 cores`);
    const f = await runTask({
      kind: 'floor-blocks',
      dir: ctx.corpus.dir,
      compression: 'gzip',
      level,
    });
    floor.push(Number(f.ms));
    const f2 = await runTask({
      kind: 'floor-blocks',
      dir: ctx.corpus.dir,
      compression: 'gzip',
      level,
      threads: 2,
    });
    floor2.push(Number(f2.ms));
    ctx.tarBytes = Number(f.tarBytes);
    for (const kind of registryKinds) {
      if (kind === 'distribution' && !ctx.peers.distribution) continue;
      // workers=1 and 2 at the level of the floor; on the Debian registry also
      // workers=2 at level 1, whose blob size is close to umoci's (pgzip).
      const variants: readonly { key: string; workers: number; level: number }[] = [
        { key: 'w1', workers: 1, level },
        { key: 'w2', workers: 2, level },
        ...(kind === 'distribution' ? [{ key: 'w2l1', workers: 2, level: 1 }] : []),
      ];
      for (const v of variants) {
        const { workers } = v;
        log(
          `build+push run ${i + 1}/${runs}: lading workers=${workers} level ${v.level} → ${registryLabel[kind]}`,
        );
        await withRegistry(
          () => startRegistry(kind),
          async (reg) => {
            const r = await runTask({
              kind: 'build-push',
              dir: ctx.corpus.dir,
              ref: `${reg.host}/bench/build:${v.key}`,
              level: v.level,
              workers,
            });
            push(`${kind}:${v.key}`, Number(r.ms));
            push(`${kind}:${v.key}:wall`, r.wallMs);
            push(`${kind}:${v.key}:auth`, Number(r.authMs));
            push(`${kind}:${v.key}:rss`, r.maxRssKiB);
            push(`${kind}:${v.key}:size`, Number(r.size));
          },
        );
      }
      if (peerOk) {
        log(`build+push run ${i + 1}/${runs}: umoci + skopeo → ${registryLabel[kind]}`);
        await withRegistry(
          () => startRegistry(kind),
          async (reg) => {
            const p = await peerPush(ctx, reg.host, 'bench/peer');
            push(`${kind}:peer`, p.ms);
            push(`${kind}:peer:size`, p.size);
          },
        );
      }
    }
  }
  for (const w of [1, 2]) ctx.pushMs.set(w, times.get(`distribution:w${w}`) ?? []);
  const tar = ctx.tarBytes ?? 0;
  rows.push({
    name: `gzip floor, 1 core (libdeflate level ${level} in 1 MiB blocks, ${fmtBytes(tar)} tar)`,
    value: secs(stat(floor)),
    data: { floorMs: floor, tarBytes: tar },
  });
  rows.push({
    name: 'gzip floor, 2 cores (the same, 2 threads at once)',
    value: secs(stat(floor2)),
    data: { floorMs: floor2 },
  });
  for (const kind of registryKinds) {
    const label = registryLabel[kind];
    if (kind === 'distribution' && !ctx.peers.distribution) {
      rows.push(missingRow(`→ ${label}`, 'docker-registry'));
      continue;
    }
    for (const workers of [1, 2]) {
      const t = times.get(`${kind}:w${workers}`) ?? [];
      const fl = workers === 1 ? floor : floor2;
      const r = stat(ratios(t, fl));
      rows.push({
        name: `lading workers=${workers} → ${label}`,
        value: secs(stat(t)),
        ratio: `${ratioText(r)} floor`,
        target: '≤ 1.15× floor',
        met: Number.isNaN(r.median) ? undefined : r.median <= 1.15,
        data: {
          ms: t,
          wallMs: times.get(`${kind}:w${workers}:wall`),
          authMs: times.get(`${kind}:w${workers}:auth`),
          maxRssKiB: times.get(`${kind}:w${workers}:rss`),
        },
      });
    }
    if (!peerOk) {
      rows.push(
        missingRow(`umoci insert + skopeo copy → ${label}`, ctx.peers.umoci ? 'skopeo' : 'umoci'),
      );
      continue;
    }
    const peer = times.get(`${kind}:peer`) ?? [];
    rows.push({
      name: `umoci insert + skopeo copy → ${label}`,
      value: secs(stat(peer)),
      data: { ms: peer },
    });
    for (const workers of [2, 1]) {
      // Against the peer's wall time, lading's wall time too (node start-up included).
      const r = stat(ratios(times.get(`${kind}:w${workers}:wall`) ?? [], peer));
      rows.push({
        name: `lading workers=${workers} / umoci+skopeo (${label})`,
        value: '',
        ratio: ratioText(r),
        target: workers === 2 ? '≤ 0.7× peer' : undefined,
        met: workers === 2 && !Number.isNaN(r.median) ? r.median <= 0.7 : undefined,
      });
    }
    const l1 = times.get(`${kind}:w2l1`);
    if (l1 !== undefined) {
      const r = stat(ratios(times.get(`${kind}:w2l1:wall`) ?? [], peer));
      rows.push({
        name: `lading workers=2 at gzip level 1 → ${label} (blob ${fmtBytes(stat(times.get(`${kind}:w2l1:size`) ?? []).median)} vs umoci's ${fmtBytes(stat(times.get(`${kind}:peer:size`) ?? []).median)})`,
        value: secs(stat(l1)),
        ratio: `${ratioText(r)} peer`,
        data: {
          ms: l1,
          wallMs: times.get(`${kind}:w2l1:wall`),
          size: times.get(`${kind}:w2l1:size`),
        },
      });
    }
  }
  const auth = stat(times.get('distribution:w2:auth') ?? []);
  notes.push(
    `corpus: ${fmtBytes(ctx.corpus.bytes)} in ${ctx.corpus.files} files, ${ctx.corpus.symlinks} symlinks, ${ctx.corpus.dirs} directories (tar ${fmtBytes(tar)}); gzip level ${level}; a fresh registry for every push (so no tool can skip or mount a blob it pushed before).`,
    `lading times are measured inside a fresh node process around write() (from the call to \`done\`); the peer's are wall times of the four commands, and the lading/peer ratios use lading's wall time too (the child process's whole life, node start-up included). \`authorized\` settled after ${fmtStat(auth, (v) => `${v.toFixed(0)} ms`)} (workers=2, Debian registry).`,
    'floor: the compression lading does by default (libdeflate, 1 MiB blocks, each its own gzip member) of the tar held in memory, at the same level, on 1 thread and on 2 threads at once (measured, not halved) — the time the compression alone needs at that level and parallelism.',
    `blob sizes: lading level ${level} ${fmtBytes(stat(times.get('distribution:w1:size') ?? []).median)} (workers=1), ${fmtBytes(stat(times.get('distribution:w2:size') ?? []).median)} (workers=2, independent 1 MiB blocks); umoci (pgzip, Go's default level) ${fmtBytes(stat(times.get('distribution:peer:size') ?? []).median)}.`,
  );
  return { id: 'build', title: '1. Build + push a directory', rows, notes };
}

/** Scenario 2: peak RSS pushing generated directory layers of growing size, lading's defaults. */
export async function memory(ctx: Context): Promise<Section> {
  const rows: Row[] = [];
  const client: number[] = [];
  const sizes = ctx.config.memorySizes;
  for (const size of sizes) {
    const rss: number[] = [];
    const srv: number[] = [];
    const ms: number[] = [];
    const dir = join(workDir, 'memory-dir');
    await rm(dir, { recursive: true, force: true });
    log(`memory: writing a ${fmtBytes(size)} generated directory`);
    await writeGeneratedDirectory(dir, size);
    for (let i = 0; i < ctx.config.memoryRuns; i++) {
      log(`memory: push ${fmtBytes(size)} directory layer, run ${i + 1}/${ctx.config.memoryRuns}`);
      const reg = await startLadingRegistry({ storage: 'filesystem' });
      let serverRss: number | undefined;
      try {
        const r = await runTask({
          kind: 'push-directory',
          dir,
          ref: `${reg.host}/bench/big:latest`,
        });
        rss.push(r.maxRssKiB / 1024);
        ms.push(Number(r.ms));
      } finally {
        serverRss = await reg.stop();
      }
      if (serverRss !== undefined) srv.push(serverRss / 1024);
    }
    await rm(dir, { recursive: true, force: true });
    const s = stat(rss);
    client.push(s.median);
    const mib = (v: number): string => `${v.toFixed(0)} MiB`;
    const throughput = stat(ms.map((v) => size / MiB / (v / 1000)));
    rows.push({
      name: `client peak RSS pushing a ${fmtBytes(size)} directory layer`,
      value: fmtStat(s, mib),
      ratio: fmtStat(throughput, (v) => `${v.toFixed(0)} MiB/s`),
      target: '≤ 150 MiB',
      met: s.median <= 150,
      data: { rssMiB: rss, ms, serverRssMiB: srv },
    });
    rows.push({
      name: `  registry (own process) peak RSS, ${fmtBytes(size)}`,
      value: fmtStat(stat(srv), mib),
    });
  }
  const first = client[0];
  const last = client[client.length - 1];
  if (first !== undefined && last !== undefined) {
    const growth = last - first;
    rows.push({
      name: `RSS growth ${fmtBytes(sizes[0] ?? 0)} → ${fmtBytes(sizes[sizes.length - 1] ?? 0)}`,
      value: `${growth >= 0 ? '+' : ''}${growth.toFixed(0)} MiB`,
      target: 'flat (≤ +32 MiB)',
      met: growth <= 32,
    });
  }
  return {
    id: 'memory',
    title: '2. Peak memory pushing a directory layer (default workers)',
    rows,
    notes: [
      `The layer is a directory of 64 MiB files (a 1 MiB block of mixed text and random bytes, repeated) written to disk before the run, pushed with \`layerFromDirectory(dir)\` and lading's defaults — every core (${availableParallelism()} workers here), block gzip level 1 — to @lading/registry (filesystem storage in a temp dir) running in its own process. RSS is \`process.resourceUsage().maxRSS\` of a fresh client process; the ratio column is throughput (uncompressed MiB/s).`,
    ],
  };
}

/** ensureSource pushes the corpus with lading into a long-lived Debian registry, as the source of copies and pulls. */
async function ensureSource(ctx: Context): Promise<{ host: string; ref: string }> {
  if (ctx.source !== undefined) return ctx.source;
  const reg = await startDebianRegistry();
  const ref = `${reg.host}/bench/source:latest`;
  log('copy/pull: pushing the source image (lading, workers=2)');
  await runTask({
    kind: 'build-push',
    dir: ctx.corpus.dir,
    ref,
    level: ctx.config.level,
    workers: 2,
  });
  ctx.source = { host: reg.host, ref, stop: () => reg.stop() };
  return ctx.source;
}

/**
 * sourceBlob downloads the largest layer of `ref` (a Debian registry, plain
 * HTTP) to a file once, and answers its path, digest and size.
 */
async function sourceBlob(ref: string): Promise<{ file: string; digest: string; size: number }> {
  const r = parseReference(ref);
  const base = `http://${r.apiHost}/v2/${r.repository}`;
  const res = await fetch(`${base}/manifests/${r.context()}`, {
    headers: {
      accept:
        'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json',
    },
  });
  if (!res.ok) throw new Error(`GET manifest of ${ref}: ${String(res.status)}`);
  const m = (await res.json()) as { layers?: { digest: string; size: number }[] };
  const layer = [...(m.layers ?? [])].sort((a, b) => b.size - a.size)[0];
  if (layer === undefined) throw new Error(`${ref} has no layers`);
  const file = join(workDir, `ingest-${layer.digest.slice(7, 19)}`);
  await runChecked('curl', ['-sSf', '-o', file, `${base}/blobs/${layer.digest}`]);
  return { file, digest: layer.digest, size: layer.size };
}

/**
 * curlIngest streams a blob from a file into a new upload on `host` with
 * curl — POST, one PATCH of the whole file, PUT with the digest — and
 * answers the three requests' wall ms: what the destination registry needs
 * to take the blob from the leanest client there is.
 */
async function curlIngest(host: string, blob: { file: string; digest: string }): Promise<number> {
  const location = (headers: string): URL => {
    const l = /^location:\s*(\S+)/im.exec(headers)?.[1];
    if (l === undefined) throw new Error(`no Location in:\n${headers}`);
    return new URL(l, `http://${host}`);
  };
  const curl = (args: readonly string[]): Promise<CommandResult> =>
    runChecked('curl', ['-sSf', '-D', '-', '-o', '/dev/null', ...args]);
  const post = await curl(['-X', 'POST', `http://${host}/v2/bench/copy/blobs/uploads/`]);
  const patch = await curl([
    '-X',
    'PATCH',
    '-H',
    'Content-Type: application/octet-stream',
    '-H',
    'Expect:',
    '-T',
    blob.file,
    location(post.stdout).href,
  ]);
  const done = location(patch.stdout);
  done.searchParams.set('digest', blob.digest);
  const put = await curl(['-X', 'PUT', done.href]);
  return post.ms + patch.ms + put.ms;
}

/** Scenario 3: `lading cp` registry → registry and registry → OCI layout, against skopeo copy. */
export async function copyScenario(ctx: Context): Promise<Section> {
  const rows: Row[] = [];
  if (!ctx.peers.distribution) {
    return {
      id: 'copy',
      title: '3. Copy',
      rows: [missingRow('copy', 'docker-registry')],
      notes: [],
    };
  }
  const src = await ensureSource(ctx);
  // A one-file image: copying it costs start-up and requests, no bytes.
  const tinyDir = join(workDir, 'copy-tiny');
  await mkdir(tinyDir, { recursive: true });
  await writeFile(join(tinyDir, 'hello.txt'), 'hello\n');
  const tiny = `${src.host}/bench/tiny:latest`;
  await runChecked(process.execPath, [ladingBin, 'build', tinyDir, tiny, '-q', '--insecure']);
  const ladingCp = (
    from: string,
    to: string,
    env: NodeJS.ProcessEnv = process.env,
  ): Promise<CommandResult> =>
    runChecked(process.execPath, [ladingBin, 'cp', '--insecure', '--quiet', from, to], { env });
  const skopeoCopy = (from: string, to: string): Promise<CommandResult> =>
    runChecked('skopeo', [
      'copy',
      '--quiet',
      '--src-tls-verify=false',
      ...(to.startsWith('docker://') ? ['--dest-tls-verify=false'] : []),
      `docker://${from}`,
      to,
    ]);
  const t = {
    r2r: [] as number[],
    r2rPeer: [] as number[],
    oci: [] as number[],
    ociPeer: [] as number[],
    tiny: [] as number[],
    tinyPeer: [] as number[],
    node: [] as number[],
    ingest: [] as number[],
    bare: [] as number[],
    bareOci: [] as number[],
    r2rHuge: [] as number[],
    ociHuge: [] as number[],
  };
  const bareClient = join(benchDir, 'scripts', 'node-floor-copy.mjs');
  const blob = ctx.peers.curl ? await sourceBlob(src.ref) : undefined;
  const ociDir = join(workDir, 'oci-copy');
  const fresh = async (f: (host: string) => Promise<CommandResult>): Promise<number> =>
    withRegistry(startDebianRegistry, async (dst) => (await f(dst.host)).ms);
  for (let i = 0; i < ctx.config.runs; i++) {
    log(`copy run ${i + 1}/${ctx.config.runs}`);
    t.r2r.push(await fresh((h) => ladingCp(src.ref, `${h}/bench/copy:latest`)));
    if (hugePages) {
      t.r2rHuge.push(await fresh((h) => ladingCp(src.ref, `${h}/bench/copy:latest`, hugeEnv)));
      await rm(ociDir, { recursive: true, force: true });
      t.ociHuge.push((await ladingCp(src.ref, `oci:${ociDir}:bench`, hugeEnv)).ms);
    }
    if (ctx.peers.skopeo) {
      t.r2rPeer.push(await fresh((h) => skopeoCopy(src.ref, `docker://${h}/bench/copy:latest`)));
    }
    t.bare.push(
      await fresh((h) =>
        runChecked(process.execPath, [bareClient, src.ref, `${h}/bench/copy:latest`]),
      ),
    );
    if (blob !== undefined) {
      t.ingest.push(await withRegistry(startDebianRegistry, (dst) => curlIngest(dst.host, blob)));
    }
    for (const [ref, own, peer] of [
      [src.ref, t.oci, t.ociPeer],
      [tiny, t.tiny, t.tinyPeer],
    ] as const) {
      await rm(ociDir, { recursive: true, force: true });
      own.push((await ladingCp(ref, `oci:${ociDir}:bench`)).ms);
      if (ctx.peers.skopeo) {
        await rm(ociDir, { recursive: true, force: true });
        peer.push((await skopeoCopy(ref, `oci:${ociDir}:bench`)).ms);
      }
    }
    await rm(ociDir, { recursive: true, force: true });
    t.bareOci.push(
      (await runChecked(process.execPath, [bareClient, src.ref, `oci:${ociDir}:bench`])).ms,
    );
    await rm(ociDir, { recursive: true, force: true });
    // The floor under every lading figure: Node starting and exiting.
    t.node.push((await runChecked(process.execPath, ['-e', '0'])).ms);
  }
  // How fast one Node process takes the blob off a socket, by the way it
  // reads: interleaved, each in its own process, against curl.
  const reads = await socketReads(src.ref, blob, ctx.config.runs);
  if (blob !== undefined) await rm(blob.file, { force: true });
  const pair = (name: string, lading: number[], peer: number[], target: boolean): void => {
    rows.push({ name: `lading cp ${name}`, value: secs(stat(lading)), data: { ms: lading } });
    if (!ctx.peers.skopeo) {
      rows.push(missingRow(`skopeo copy ${name}`, 'skopeo'));
      return;
    }
    const r = stat(ratios(lading, peer));
    rows.push({
      name: `skopeo copy ${name}`,
      value: secs(stat(peer)),
      ratio: `lading ${ratioText(r)}`,
      ...(target
        ? { target: '≤ 0.9× skopeo', met: Number.isNaN(r.median) ? undefined : r.median <= 0.9 }
        : {}),
      data: { ms: peer },
    });
  };
  const hugeRow = (name: string, huge: number[], peer: number[]): void => {
    if (huge.length === 0) return;
    rows.push({
      name: `  lading cp ${name} with \`GLIBC_TUNABLES=${hugeTunable}\` (opt-in: glibc's malloc on transparent huge pages)`,
      value: secs(stat(huge)),
      ...(ctx.peers.skopeo ? { ratio: `lading ${ratioText(stat(ratios(huge, peer)))}` } : {}),
      data: { ms: huge },
    });
  };
  pair('registry → registry', t.r2r, t.r2rPeer, true);
  hugeRow('registry → registry', t.r2rHuge, t.r2rPeer);
  if (blob === undefined) rows.push(missingRow("  the destination's floor", 'curl'));
  else {
    rows.push({
      name: `  the destination's floor: the layer blob (${fmtBytes(blob.size)}) streamed from a file by curl into a fresh Debian registry (POST, PATCH, PUT)`,
      value: secs(stat(t.ingest)),
      ratio: `lading ${ratioText(stat(ratios(t.r2r, t.ingest)))}, skopeo ${ratioText(stat(ratios(t.r2rPeer, t.ingest)))}`,
      data: { ms: t.ingest },
    });
    if (ctx.peers.skopeo) {
      rows.push({
        name: '  0.9× skopeo minus that floor: what the target leaves a client for its start-up, requests and the rest of the image',
        value: secs(stat(t.r2rPeer.map((v, i) => 0.9 * v - (t.ingest[i] ?? Number.NaN)))),
      });
    }
  }
  const bareRow = (bare: number[], lading: number[], peer: number[]): void => {
    rows.push({
      name: `  a bare Node client: \`node bench/scripts/node-floor-copy.mjs\` (node:http only, no HEADs, auth, retries or progress; ${process.version})`,
      value: secs(stat(bare)),
      ratio: ctx.peers.skopeo
        ? `bare ${ratioText(stat(ratios(bare, peer)))} skopeo, lading ${ratioText(stat(ratios(lading, bare)))} bare`
        : `lading ${ratioText(stat(ratios(lading, bare)))} bare`,
      data: { ms: bare },
    });
  };
  bareRow(t.bare, t.r2r, t.r2rPeer);
  pair('registry → OCI layout', t.oci, t.ociPeer, true);
  hugeRow('registry → OCI layout', t.ociHuge, t.ociPeer);
  bareRow(t.bareOci, t.oci, t.ociPeer);
  if (reads !== undefined) rows.push(...socketReadRows(reads, blob?.size ?? 0));
  pair('of a one-file image → OCI layout (fixed cost)', t.tiny, t.tinyPeer, false);
  rows.push({
    name: `  of which Node itself (\`node -e 0\`, ${process.version})`,
    value: secs(stat(t.node)),
    data: { ms: t.node },
  });
  if (ctx.peers.skopeo) {
    const net = (big: number[], small: number[]): number[] =>
      big.map((v, i) => v - (small[i] ?? Number.NaN));
    const r = stat(ratios(net(t.r2r, t.tiny), net(t.r2rPeer, t.tinyPeer)));
    const o = stat(ratios(net(t.oci, t.tiny), net(t.ociPeer, t.tinyPeer)));
    rows.push({
      name: 'moving the bytes (each time minus its fixed cost): registry → registry',
      value: '',
      ratio: `lading ${ratioText(r)}`,
    });
    rows.push({
      name: 'moving the bytes (each time minus its fixed cost): → OCI layout',
      value: '',
      ratio: `lading ${ratioText(o)}`,
    });
  }
  return {
    id: 'copy',
    title: '3. Copy (Debian registry → fresh Debian registry, and → OCI layout)',
    rows,
    notes: [
      "All times are wall times of whole processes: `node packages/cli/bin/lading.js cp --insecure --quiet SRC DST` (node start-up and module loading included) against `skopeo copy`. Every registry → registry copy goes to a fresh Debian registry (no mount, no skip). The source image is the corpus layer pushed by lading. lading reads the layer from the plain-HTTP source on a connection of its own into a few reused buffers and lends each chunk to the destination (written at its offset into the layout's temp file, or sent in one PATCH on a connection of its own), hashing it once on the way; the destination commits only after the digest matched.",
      'The fixed cost is the same copy of an image of one 6-byte file: start-up, module loading and the requests, no bytes to speak of. The last two rows subtract it from both sides, pairing the samples of a run.',
      'The bare Node client is the least a Node process does for the same copy: one manifest GET, then per blob a POST, the GET piped into one PATCH while sha256 checks it, and a PUT (→ OCI layout: the GET piped into a file while sha256 checks it, renamed into blobs/); the manifest last. Its ratio to skopeo is what Node itself (start-up, node:http, the hash on the main thread) leaves of the target on this machine.',
      "The destination's floor is the layer blob alone, read from a file by curl and uploaded in one PATCH to a fresh Debian registry: no download, no hashing on the client, no start-up to speak of. Every registry → registry copy also waits that long for the same registry to take the same bytes (it hashes and writes them as they arrive), so no client can copy the image in less.",
      `\`bin/lading.js\` runs the CLI bundled (packages/cli/dist/bundle, built by \`pnpm bench\`): a few files to load instead of ~130, undici without fetch/WebSocket/HTTP/2, and V8's baseline WebAssembly tier for undici's parser (the largest tiering budget), since Node waits at exit for the optimizing one. What remains above \`node -e 0\` is loading and running ~0.8 MB of JavaScript (undici, core, remote, layout) and the requests.`,
    ],
  };
}

/** SocketReads are the runs of bench/scripts/socket-read.mjs per mode, and curl's. */
interface SocketReads {
  readonly curl: number[];
  readonly modes: Record<ReadMode, { ms: number[]; faults: number[] }>;
}

type ReadMode = 'data' | 'onread' | 'undici' | 'dataHuge' | 'undiciHuge';

/**
 * hugeTunable puts glibc's malloc heap on transparent huge pages (glibc ≥
 * 2.35, THP `madvise` or `always`): a fresh buffer then faults in 2 MiB at
 * a time. It is read at process start, so a user sets it; lading cannot.
 */
const hugeTunable = 'glibc.malloc.hugetlb=1';
const hugeEnv: NodeJS.ProcessEnv = { ...process.env, GLIBC_TUNABLES: hugeTunable };

/** hugePages says whether the tunable means anything here (Linux with THP not off). */
const hugePages =
  process.platform === 'linux' &&
  /\[(?:madvise|always)\]/.test(readFileSyncOr('/sys/kernel/mm/transparent_hugepage/enabled'));

function readFileSyncOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/**
 * socketReads reads the source's layer blob `runs` times over one
 * connection in each way socket-read.mjs knows, and with curl to
 * /dev/null; undefined without curl (no blob known).
 */
async function socketReads(
  ref: string,
  blob: { digest: string } | undefined,
  runs: number,
): Promise<SocketReads | undefined> {
  if (blob === undefined) return undefined;
  const r = parseReference(ref);
  const url = `http://${r.apiHost}/v2/${r.repository}/blobs/${blob.digest}`;
  const script = join(benchDir, 'scripts', 'socket-read.mjs');
  const out: SocketReads = {
    curl: [],
    modes: {
      data: { ms: [], faults: [] },
      onread: { ms: [], faults: [] },
      undici: { ms: [], faults: [] },
      dataHuge: { ms: [], faults: [] },
      undiciHuge: { ms: [], faults: [] },
    },
  };
  const modes: ReadMode[] = ['data', 'onread', 'undici'];
  if (hugePages) modes.push('dataHuge', 'undiciHuge');
  for (let i = 0; i < Math.max(runs, 3); i++) {
    for (const mode of modes) {
      const huge = mode.endsWith('Huge');
      const res = await runChecked(process.execPath, [script, mode.replace('Huge', ''), url], {
        env: huge ? hugeEnv : process.env,
      });
      const { ms, minorFaults } = JSON.parse(res.stdout) as { ms: number; minorFaults: number };
      out.modes[mode].ms.push(ms);
      out.modes[mode].faults.push(minorFaults);
    }
    const c = await runChecked('curl', ['-sSf', '-o', '/dev/null', '-w', '%{time_total}', url]);
    out.curl.push(Number(c.stdout) * 1000);
  }
  return out;
}

/** socketReadRows reports {@link socketReads}: times, and each Node way's page faults. */
function socketReadRows(reads: SocketReads, size: number): Row[] {
  const median = (a: number[]): number => stat(a).median;
  const way = (name: string, m: { ms: number[]; faults: number[] }): Row => ({
    name: `    ${name}: ${Math.round(median(m.faults)).toLocaleString('en')} minor page faults`,
    value: fmtStat(stat(m.ms), (v) => `${v.toFixed(0)} ms`),
    ratio: `${ratioText(stat(ratios(m.ms, reads.curl)))} curl`,
    data: { ms: m.ms, faults: m.faults },
  });
  return [
    {
      name: `  what bounds a Node client here: the layer blob (${fmtBytes(size)}) read to its end over one connection, from connecting to the last byte (in-process, start-up excluded)`,
      value: '',
    },
    {
      name: '    curl -o /dev/null',
      value: fmtStat(stat(reads.curl), (v) => `${v.toFixed(0)} ms`),
      data: { ms: reads.curl },
    },
    way(
      "node:net, 'data' events (a fresh 64 KiB buffer per read, as every Node HTTP client reads)",
      reads.modes.data,
    ),
    way('node:net, `onread` into one reused 1 MiB buffer', reads.modes.onread),
    way("undici `request()`, the body to its end (lading's client)", reads.modes.undici),
    ...(reads.modes.dataHuge.ms.length === 0
      ? []
      : [
          way(`'data' events with \`GLIBC_TUNABLES=${hugeTunable}\``, reads.modes.dataHuge),
          way(`undici with \`GLIBC_TUNABLES=${hugeTunable}\``, reads.modes.undiciHuge),
        ]),
  ];
}

/** Scenario 4: pull + extract vs skopeo copy + umoci unpack. */
export async function pullScenario(ctx: Context): Promise<Section> {
  const rows: Row[] = [];
  const notes: string[] = [];
  if (!ctx.peers.distribution) {
    return {
      id: 'pull',
      title: '4. Pull + extract',
      rows: [missingRow('pull', 'docker-registry')],
      notes,
    };
  }
  const src = await ensureSource(ctx);
  const lading: number[] = [];
  const own: number[] = [];
  const peer: number[] = [];
  let extracted = true;
  const out = join(workDir, 'pull-lading');
  const layoutDir = join(workDir, 'pull-umoci');
  const bundle = join(workDir, 'pull-bundle');
  for (let i = 0; i < ctx.config.runs; i++) {
    log(`pull run ${i + 1}/${ctx.config.runs}`);
    const r = await runTask({ kind: 'pull-extract', src: src.ref, out });
    lading.push(r.wallMs);
    own.push(Number(r.ms));
    extracted = r.extracted === true;
    await rm(out, { recursive: true, force: true });
    if (ctx.peers.skopeo && ctx.peers.umoci) {
      await rm(layoutDir, { recursive: true, force: true });
      await rm(bundle, { recursive: true, force: true });
      let ms = (
        await runChecked('skopeo', [
          'copy',
          '--quiet',
          '--src-tls-verify=false',
          `docker://${src.ref}`,
          `oci:${layoutDir}:bench`,
        ])
      ).ms;
      ms += (
        await runChecked('umoci', ['unpack', '--rootless', '--image', `${layoutDir}:bench`, bundle])
      ).ms;
      peer.push(ms);
      await rm(layoutDir, { recursive: true, force: true });
      await rm(bundle, { recursive: true, force: true });
    }
  }
  if (extracted) {
    rows.push({ name: 'lading pull + extract', value: secs(stat(lading)), data: { ms: lading } });
    rows.push({
      name: '  of which the operation (after node start-up)',
      value: secs(stat(own)),
      data: { ms: own },
    });
  } else {
    rows.push(missingRow('lading pull + extract', 'layer extraction in @lading/layers'));
    rows.push({
      name: 'lading pull + verify + gunzip to /dev/null (no extraction)',
      value: secs(stat(lading)),
      data: { ms: lading },
    });
  }
  if (peer.length > 0) {
    const r = stat(ratios(lading, peer));
    rows.push({
      name: 'skopeo copy + umoci unpack --rootless',
      value: secs(stat(peer)),
      ratio: extracted ? `lading ${ratioText(r)}` : `(lading partial ${ratioText(r)})`,
      target: extracted ? '≤ 0.8× peer' : undefined,
      met: extracted && !Number.isNaN(r.median) ? r.median <= 0.8 : undefined,
      data: { ms: peer },
    });
  } else {
    rows.push(missingRow('skopeo copy + umoci unpack', 'skopeo/umoci'));
  }
  notes.push(
    'All times are wall times of whole processes (lading: a fresh node process running `pull()` + `extract()`, start-up included).',
    'umoci unpack also writes an mtree manifest of the rootfs (it hashes every file again).',
  );
  return { id: 'pull', title: '4. Pull + extract', rows, notes };
}

/** Scenario 5: registry server throughput under a bounded load from another process. */
export async function serverScenario(ctx: Context): Promise<Section> {
  const rows: Row[] = [];
  const l = ctx.config.load;
  const res = new Map<RegistryKind, { up: number[]; down: number[]; rps: number[] }>();
  for (let i = 0; i < ctx.config.runs; i++) {
    for (const kind of registryKinds) {
      if (kind === 'distribution' && !ctx.peers.distribution) continue;
      log(`registry server run ${i + 1}/${ctx.config.runs}: ${registryLabel[kind]}`);
      await withRegistry(
        () => startRegistry(kind),
        async (reg) => {
          const r = await run(process.execPath, [
            join(benchDir, 'dist', 'load.js'),
            JSON.stringify({ url: reg.url, repo: 'bench/load', ...l }),
          ]);
          const line = r.stdout.split('\n').find((x) => x.startsWith('RESULT '));
          if (r.code !== 0 || line === undefined)
            throw new Error(`load generator failed: ${r.stderr.slice(-2000)}`);
          const j = JSON.parse(line.slice(7)) as {
            uploadMBps: number;
            downloadMBps: number;
            manifestRps: number;
          };
          const e = res.get(kind) ?? { up: [], down: [], rps: [] };
          e.up.push(j.uploadMBps);
          e.down.push(j.downloadMBps);
          e.rps.push(j.manifestRps);
          res.set(kind, e);
        },
      );
    }
  }
  const mbps = (v: number): string => `${v.toFixed(0)} MB/s`;
  const rps = (v: number): string => `${v.toFixed(0)} req/s`;
  const lad = res.get('lading');
  const deb = res.get('distribution');
  const metrics: readonly [string, 'up' | 'down' | 'rps', (v: number) => string][] = [
    [
      `blob upload (${l.count} × ${fmtBytes(l.blobSize)}, ${l.concurrency} at once, POST + PUT)`,
      'up',
      mbps,
    ],
    [`blob download (GET, ${l.concurrency} at once)`, 'down', mbps],
    [`manifest GET by tag (${l.manifestCount}, ${l.manifestConcurrency} at once)`, 'rps', rps],
  ];
  for (const [name, key, f] of metrics) {
    for (const kind of registryKinds) {
      const e = res.get(kind);
      if (e === undefined) {
        rows.push(missingRow(`${name}: ${registryLabel[kind]}`, 'docker-registry'));
        continue;
      }
      const ratio =
        kind === 'lading' && deb !== undefined && lad !== undefined
          ? stat(ratios(lad[key], deb[key]))
          : undefined;
      rows.push({
        name: `${name}: ${registryLabel[kind]}`,
        value: fmtStat(stat(e[key]), f),
        ...(ratio === undefined ? {} : { ratio: `${ratioText(ratio)} Debian` }),
        // Issue 15: blob GET at least as fast as the CNCF registry.
        ...(ratio !== undefined && key === 'down'
          ? {
              target: '≥ 1.0× Debian',
              met: Number.isNaN(ratio.median) ? undefined : ratio.median >= 1,
            }
          : {}),
        data: e[key],
      });
    }
  }
  return {
    id: 'server',
    title: '5. Registry server (load from a second node process, undici, loopback)',
    rows,
    notes: [
      'Both registries store on the filesystem (temp dir) and run in their own process; client and server share the same 2 cores, so these are whole-machine figures. Ratios > 1 mean @lading/registry is faster. No target was given.',
    ],
  };
}

/** Scenario 6: time from write() to the rejection of `authorized` with a wrong password. */
export async function authScenario(ctx: Context): Promise<Section> {
  const rows: Row[] = [];
  const user = { username: 'bench', password: 'right-password' };
  const cases: [string, () => Promise<BenchRegistry>][] = [
    [
      '@lading/registry, basic auth',
      () => startLadingRegistry({ auth: { type: 'basic', ...user } }),
    ],
    [
      '@lading/registry, token auth',
      () => startLadingRegistry({ auth: { type: 'token', ...user } }),
    ],
  ];
  if (ctx.peers.distribution) {
    cases.push(['Debian docker-registry, htpasswd', () => startDebianRegistry({ htpasswd: user })]);
  }
  for (const [name, start] of cases) {
    const ms: number[] = [];
    const bytes: number[] = [];
    const codes = new Set<string>();
    const seen = { authorized: false };
    for (let i = 0; i < ctx.config.runs; i++) {
      log(`auth failure run ${i + 1}/${ctx.config.runs}: ${name}`);
      await withRegistry(start, async (reg) => {
        const r = await runTask({
          kind: 'auth-fail',
          ref: `${reg.host}/bench/denied:latest`,
          username: user.username,
          password: 'wrong-password',
          fileSize: 1024 * MiB,
        });
        ms.push(Number(r.ms));
        bytes.push(Number(r.bytesAtRejection));
        codes.add(String(r.code));
        if (r.authorized === true) seen.authorized = true;
      });
    }
    const maxBytes = Math.max(...bytes);
    rows.push({
      name: `${name}: write() → \`authorized\` rejected`,
      value: fmtStat(stat(ms), (v) => `${v.toFixed(0)} ms`),
      ratio: [...codes].join(', '),
      target: '0 layer bytes read',
      met: !seen.authorized && maxBytes === 0,
      data: { ms, bytesAtRejection: bytes, codes: [...codes] },
    });
    rows.push({ name: '  layer bytes read by then (max)', value: `${maxBytes} B` });
  }
  if (!ctx.peers.distribution)
    rows.push(missingRow('Debian docker-registry, htpasswd', 'docker-registry'));
  return {
    id: 'auth',
    title: '6. Time to auth failure (wrong password)',
    rows,
    notes: [
      "The layer is a 1 GiB generated `streamLayer` whose source counts the bytes pulled from it. Times include the child process's own start of the request (ping, challenge, token or basic attempt) but not node start-up. The ratio column holds the error code `authorized` rejected with.",
    ],
  };
}

/** Profile: time each stage of the hot path separately on the corpus. */
export async function stagesScenario(ctx: Context): Promise<Section> {
  const { runs, level } = ctx.config;
  const stages: readonly [string, Record<string, unknown>][] = [
    ['walk + tar → /dev/null', { stage: 'tar', workers: 1 }],
    ['walk + tar + sha256 → /dev/null', { stage: 'tar+sha256', workers: 1 }],
    [
      `layer: walk + tar + sha256 + gzip ${level} + sha256, workers=1`,
      { stage: 'layer', workers: 1 },
    ],
    [
      `layer: walk + tar + sha256 + gzip ${level} + sha256, workers=2`,
      { stage: 'layer', workers: 2 },
    ],
  ];
  const rows: Row[] = [];
  let tarBytes = ctx.tarBytes;
  const results: number[][] = stages.map(() => []);
  // Its own gzip floor in every run, next to the layer pipelines: on a shared
  // machine the speed drifts, so each ratio compares measurements minutes apart.
  const floor: number[] = [];
  for (let i = 0; i < runs; i++) {
    log(`profile run ${i + 1}/${runs}: gzip floor`);
    const f = await runTask({
      kind: 'floor-blocks',
      dir: ctx.corpus.dir,
      compression: 'gzip',
      level,
    });
    floor.push(Number(f.ms));
    for (const [j, [name, s]] of stages.entries()) {
      log(`profile run ${i + 1}/${runs}: ${name}`);
      const r = await runTask({ kind: 'stage', dir: ctx.corpus.dir, level, ...s });
      results[j]?.push(Number(r.ms));
      if (s.stage === 'tar') tarBytes = Number(r.bytes);
    }
  }
  // One more, untimed pass of each layer pipeline under the V8 profiler: who keeps the main thread busy.
  const profiles: string[] = [];
  for (const workers of [1, 2]) {
    const dir = join(workDir, `profile-w${workers}`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    log(`profile: CPU profile of the layer pipeline, workers=${workers}`);
    await runTask(
      { kind: 'stage', stage: 'layer', dir: ctx.corpus.dir, level, workers },
      { execArgv: ['--cpu-prof', `--cpu-prof-dir=${dir}`] },
    );
    const s = await summariseMainThread(dir, 6);
    if (s !== undefined) {
      const top = s.top.map((t) => `${t.fn} ${(t.share * 100).toFixed(0)}%`).join('; ');
      profiles.push(
        `CPU profile, layer pipeline workers=${workers}: main thread busy ${(s.busyShare * 100).toFixed(0)}% of the wall time; its top self time: ${top}.`,
      );
    }
  }
  const throughput = (ms: readonly number[]): string =>
    fmtStat(stat(ms.map((v) => (tarBytes ?? 0) / 1e6 / (v / 1000))), (v) => `${v.toFixed(0)} MB/s`);
  for (const [j, [name]] of stages.entries()) {
    const t = results[j] ?? [];
    rows.push({ name, value: secs(stat(t)), ratio: throughput(t), data: { ms: t } });
  }
  rows.push({
    name: `gzip ${level} alone, 1 core (floor: libdeflate 1 MiB blocks of the tar in memory, this scenario)`,
    value: secs(stat(floor)),
    ratio: throughput(floor),
    data: { ms: floor },
  });
  // The layers issue's targets, each from pairs measured in the same run.
  const w1 = ratios(results[2] ?? [], floor);
  const w2 = ratios(floor, results[3] ?? []);
  rows.push({
    name: 'layer pipeline workers=1 / gzip floor (same bytes, same level)',
    value: '',
    ratio: ratioText(stat(w1)),
    target: '≤ 1.10×',
    met: w1.length === 0 ? undefined : stat(w1).median <= 1.1,
  });
  rows.push({
    name: 'layer pipeline workers=2: speed-up over the 1-core gzip floor',
    value: '',
    ratio: ratioText(stat(w2)),
    target: '≥ 1.8×',
    met: w2.length === 0 ? undefined : stat(w2).median >= 1.8,
  });
  for (const [w, t] of ctx.pushMs) {
    if (t.length === 0) continue;
    rows.push({
      name: `+ HTTP: the layer pushed to the Debian registry, workers=${w} (scenario 1)`,
      value: secs(stat(t)),
      ratio: throughput(t),
    });
  }
  return {
    id: 'stages',
    title: '7. Where the time goes (hot path, one stage added at a time)',
    rows,
    notes: [
      'Each line runs in a fresh process on the corpus (page cache warm). The ratio column is uncompressed tar MB/s. "+ HTTP" is scenario 1 (the same layer pushed).',
      ...profiles,
    ],
  };
}

export async function cleanWork(): Promise<void> {
  await mkdir(workDir, { recursive: true });
  for (const d of ['umoci-push', 'oci-copy', 'pull-lading', 'pull-umoci', 'pull-bundle']) {
    await rm(join(workDir, d), { recursive: true, force: true });
  }
}

export { errorMessage };
