// The benchmark entry point: `npx -y pnpm@10 run bench [-- --quick]`.
// Options: --quick (small corpus, 1 run), --runs=N, --corpus-mb=N,
// --only=build,stages,memory,copy,pull,server,auth (none: only prepare the corpus),
// --memory-mb=512,1024,2048, --memory-runs=N.
import { readFile } from 'node:fs/promises';
import { availableParallelism, loadavg, totalmem } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { describeCorpus, prepareCorpus } from './corpus.js';
import { log, type BenchConfig, type Context, type Peers } from './context.js';
import { plain, writeResults, type Section } from './report.js';
import {
  authScenario,
  buildPush,
  cleanWork,
  copyScenario,
  memory,
  pullScenario,
  serverScenario,
  stagesScenario,
} from './scenarios.js';
import { peersScenario } from './peers.js';
import { benchDir, errorMessage, fmtBytes, GiB, has, MiB, run } from './util.js';

const scenarioIds = [
  'build',
  'stages',
  'memory',
  'copy',
  'pull',
  'server',
  'auth',
  'peers',
] as const;

function parseArgs(argv: readonly string[]): BenchConfig {
  const flags = new Map<string, string>();
  for (const a of argv) {
    if (a === '--') continue;
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (m === null) throw new Error(`unknown argument ${a}`);
    flags.set(m[1] ?? '', m[2] ?? 'true');
  }
  const quick = flags.get('quick') === 'true';
  const runs = Number(flags.get('runs') ?? (quick ? 1 : 3));
  const corpusMb = Number(flags.get('corpus-mb') ?? (quick ? 48 : 512));
  const corpusDir = flags.get('corpus');
  const only = flags.get('only');
  for (const id of only?.split(',') ?? []) {
    if (id !== 'none' && !(scenarioIds as readonly string[]).includes(id)) {
      throw new Error(`--only: unknown scenario ${id} (known: ${scenarioIds.join(', ')}, none)`);
    }
  }
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  if (!Number.isFinite(corpusMb) || corpusMb <= 0) throw new Error('--corpus-mb must be positive');
  const memoryMb = flags.get('memory-mb');
  const memorySizes =
    memoryMb !== undefined
      ? memoryMb.split(',').map((v) => Number(v) * MiB)
      : quick
        ? [64 * MiB, 128 * MiB, 256 * MiB]
        : [GiB / 2, GiB, 2 * GiB];
  return {
    quick,
    runs,
    only: only === undefined ? undefined : new Set(only.split(',')),
    corpusBytes: Math.floor(corpusMb * MiB),
    corpusDir: corpusDir === undefined ? undefined : resolve(corpusDir),
    level: 6,
    memorySizes,
    memoryRuns: Number(flags.get('memory-runs') ?? runs),
    load: quick
      ? { count: 8, blobSize: 8 * MiB, concurrency: 4, manifestCount: 500, manifestConcurrency: 16 }
      : {
          count: 32,
          blobSize: 16 * MiB,
          concurrency: 4,
          manifestCount: 3000,
          manifestConcurrency: 16,
        },
  };
}

async function version(cmd: string, args: readonly string[]): Promise<string> {
  try {
    const r = await run(cmd, args);
    return (r.stdout || r.stderr).trim().split('\n')[0] ?? 'unknown';
  } catch {
    return 'not installed';
  }
}

async function machine(): Promise<{ nproc: number; cpu: string; memory: string }> {
  let cpu = 'unknown';
  try {
    const info = await readFile('/proc/cpuinfo', 'utf8');
    cpu = /^model name\s*:\s*(.*)$/m.exec(info)?.[1]?.trim() ?? cpu;
  } catch {
    // not Linux
  }
  return { nproc: availableParallelism(), cpu, memory: fmtBytes(totalmem()) };
}

/** corpusName names the results of a `--corpus=DIR` run: corpus-<last part of DIR>. */
function corpusName(dir: string): string {
  return `corpus-${basename(dir).replace(/[^A-Za-z0-9._-]+/g, '_') || 'root'}`;
}

function order(id: string): number {
  const i = (scenarioIds as readonly string[]).indexOf(id);
  return i < 0 ? scenarioIds.length : i;
}

/**
 * carryOver adds, to a partial run (`--only`), the sections of the previous
 * results that this run did not measure, when that run used the same corpus
 * budget and mode; it answers one line per carried section.
 */
async function carryOver(
  config: BenchConfig,
  budget: number,
  sections: Section[],
): Promise<string[]> {
  let previous: {
    date?: string;
    config?: { quick?: boolean };
    corpus?: { budget?: number };
    sections?: (Section & { ranAt?: string })[];
  };
  try {
    previous = JSON.parse(
      await readFile(join(benchDir, 'results', 'latest.json'), 'utf8'),
    ) as typeof previous;
  } catch {
    return [];
  }
  if (previous.corpus?.budget !== budget || previous.config?.quick !== config.quick) return [];
  const lines: string[] = [];
  for (const s of previous.sections ?? []) {
    if (sections.some((x) => x.id === s.id) || config.only?.has(s.id) === true) continue;
    const ranAt = s.ranAt ?? previous.date ?? 'an earlier run';
    sections.push({ ...s, ranAt });
    lines.push(`${s.id} is carried over from the run of ${ranAt.replace(/\.\d+Z$/, 'Z')}`);
  }
  return lines;
}

function loadText(): string {
  return loadavg()
    .map((v) => v.toFixed(1))
    .join(' / ');
}

/**
 * tlsEnvironment lists the variables that point programs at extra CA
 * certificates. Every registry here is plain HTTP on 127.0.0.1, so they do
 * nothing for any tool measured, but Node 20 reads NODE_EXTRA_CA_CERTS at
 * start-up (~80 ms for a 215 KiB bundle; Node 22 and later read it on the
 * first TLS connection): a machine that sets it would bill every lading
 * process for a file no run uses. The bench unsets them for every process
 * it starts, peers included, and says so in the header.
 */
const tlsEnvironment = ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR'] as const;

async function main(): Promise<void> {
  const config = parseArgs(process.argv.slice(2));
  const started = new Date();
  const unset = tlsEnvironment.filter((k) => process.env[k] !== undefined);
  for (const k of unset) Reflect.deleteProperty(process.env, k);
  log(`lading bench${config.quick ? ' (quick)' : ''}: ${config.runs} run(s) per measurement`);
  // Install the Debian peers when missing (idempotent; needs root or sudo).
  const ensure = await run('bash', [join(benchDir, '..', 'scripts', 'ensure-peers.sh')], {
    env: { ...process.env, LADING_BENCH_PEERS: '1' },
  });
  if (ensure.code !== 0)
    log(`ensure-peers failed (${String(ensure.code)}): ${ensure.stderr.trim()}`);
  const peers: Peers = {
    skopeo: await has('skopeo'),
    umoci: await has('umoci'),
    distribution: (await has('docker-registry')) || (await has('/usr/bin/docker-registry')),
    curl: await has('curl'),
    buildah: await has('buildah'),
  };
  const pkg = JSON.parse(
    await readFile(join(benchDir, '..', 'packages', 'core', 'package.json'), 'utf8'),
  ) as {
    version: string;
  };
  const versions = {
    node: process.version,
    lading: `${pkg.version} (${(await version('git', ['-C', benchDir, 'rev-parse', '--short', 'HEAD'])).trim()})`,
    skopeo: await version('skopeo', ['--version']),
    umoci: await version('umoci', ['--version']),
    'docker-registry': await version('docker-registry', ['--version']),
  };
  const m = await machine();
  await cleanWork();
  log(`corpus: ${config.corpusDir ?? `preparing up to ${fmtBytes(config.corpusBytes)}`}`);
  const corpus =
    config.corpusDir === undefined
      ? await prepareCorpus(config.corpusBytes)
      : await describeCorpus(config.corpusDir);
  log(`corpus: ${fmtBytes(corpus.bytes)} in ${corpus.files} files`);
  const ctx: Context = {
    config,
    corpus,
    peers,
    tarBytes: undefined,
    pushMs: new Map(),
    source: undefined,
  };
  const scenarios: Record<(typeof scenarioIds)[number], (c: Context) => Promise<Section>> = {
    build: buildPush,
    stages: stagesScenario,
    memory,
    copy: copyScenario,
    pull: pullScenario,
    server: serverScenario,
    auth: authScenario,
    peers: peersScenario,
  };
  const sections: Section[] = [];
  for (const id of scenarioIds) {
    if (config.only !== undefined && !config.only.has(id)) continue;
    try {
      const startedAt = new Date().toISOString().slice(11, 19);
      const loadBefore = loadText();
      const s = await scenarios[id](ctx);
      s.ranAt = new Date().toISOString();
      // Other work on the machine inflates every time: say how busy it was.
      s.notes.push(
        `load average (1/5/15 min, ${availableParallelism()} cores): ${loadBefore} at ${startedAt} UTC, ${loadText()} at ${s.ranAt.slice(11, 19)} UTC.`,
      );
      sections.push(s);
      process.stdout.write(plain([s]) + '\n');
    } catch (err) {
      log(
        `scenario ${id} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
      );
      sections.push({
        id,
        title: `${id}: failed`,
        rows: [{ name: id, value: `failed: ${errorMessage(err)}` }],
        notes: [],
      });
    }
  }
  await ctx.source?.stop();
  const carried =
    config.only === undefined || config.corpusDir !== undefined
      ? []
      : await carryOver(config, corpus.budget, sections);
  sections.sort((a, b) => order(a.id) - order(b.id));
  const seconds = (Date.now() - started.getTime()) / 1000;
  const header = [
    `Run of ${started.toISOString().replace(/\.\d+Z$/, 'Z')} (${config.quick ? 'quick' : 'full'}, ${config.runs} run(s) per measurement, took ${seconds.toFixed(0)} s).`,
    '',
    `- machine: ${m.nproc} cores (${m.cpu}), ${m.memory} RAM`,
    `- versions: node ${versions.node}, lading ${versions.lading}, ${versions.skopeo}, umoci ${versions.umoci.replace(/^umoci version /, '')}, ${versions['docker-registry']}`,
    ...(unset.length > 0
      ? [
          `- environment: ${unset.join(', ')} unset for every process started (all registries are plain HTTP on 127.0.0.1; Node 20 reads NODE_EXTRA_CA_CERTS at start-up)`,
        ]
      : []),
    config.corpusDir === undefined
      ? `- corpus: ${fmtBytes(corpus.bytes)} of real files (${corpus.files} files, ${corpus.symlinks} symlinks) from /usr/lib/x86_64-linux-gnu, /usr/bin, /usr/share/doc`
      : `- corpus: ${config.corpusDir} as it is (\`--corpus\`): ${fmtBytes(corpus.bytes)} in ${corpus.files} files, ${corpus.symlinks} symlinks`,
    ...(carried.length > 0
      ? [
          `- this run measured ${config.only === undefined ? 'all' : [...config.only].join(', ')}; ${carried.join('; ')}`,
        ]
      : []),
  ].join('\n');
  const name = config.corpusDir === undefined ? undefined : corpusName(config.corpusDir);
  await writeResults(header, sections, name, {
    date: started.toISOString(),
    seconds,
    machine: m,
    versions,
    config: { ...config, only: config.only === undefined ? undefined : [...config.only] },
    corpus,
    sections,
  });
  log(
    `done in ${seconds.toFixed(0)} s; wrote ${name === undefined ? 'bench/results/latest.json and bench/RESULTS.md' : `bench/results/${name}.md and .json`}`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
