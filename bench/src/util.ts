import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** benchDir is /…/bench (this file lives in bench/dist). */
export const benchDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** ladingBin is the `lading` program of this checkout. */
export const ladingBin = join(benchDir, '..', 'packages', 'cli', 'bin', 'lading.js');

/** workDir holds everything a run writes besides results (git-ignored). */
export const workDir = join(benchDir, '.work');
export const corpusDir = join(benchDir, 'corpus');
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** Stat is the median and spread of several samples. */
export interface Stat {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly samples: readonly number[];
}

export function stat(samples: readonly number[]): Stat {
  const s = [...samples].sort((a, b) => a - b);
  if (s.length === 0) return { median: NaN, min: NaN, max: NaN, samples: [] };
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
  return { median, min: s[0] ?? NaN, max: s[s.length - 1] ?? NaN, samples };
}

export function now(): number {
  return performance.now();
}

/** CommandResult is a finished external command. */
export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** run starts a program, waits for it, and measures its wall time. */
export function run(
  cmd: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  return new Promise((resolvePromise, reject) => {
    const t0 = now();
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: options.env ?? process.env,
      cwd: options.cwd,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      if (stdout.length < 1_000_000) stdout += b.toString('utf8');
    });
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 100_000) stderr += b.toString('utf8');
    });
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.once('error', (err) => {
      if (timer !== undefined) clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      if (timer !== undefined) clearTimeout(timer);
      resolvePromise({ code, stdout, stderr, ms: now() - t0 });
    });
  });
}

/** runChecked is {@link run} that throws on a non-zero exit. */
export async function runChecked(
  cmd: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  const r = await run(cmd, args, options);
  if (r.code !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} exited with ${String(r.code)}: ${r.stderr.slice(-2000)}`,
    );
  }
  return r;
}

/** TaskResult is the JSON a child task prints on its last `RESULT ` line. */
export type TaskResult = Record<string, unknown> & {
  readonly maxRssKiB: number;
  /** wallMs is the child's whole life seen from the parent (node start-up included). */
  readonly wallMs: number;
};

/**
 * runTask runs one lading operation in a fresh node process (dist/task.js),
 * so that each measurement starts from a cold heap and its peak RSS is its own.
 */
export async function runTask(
  task: Record<string, unknown>,
  options: { timeoutMs?: number; execArgv?: readonly string[] } = {},
): Promise<TaskResult> {
  const args = [
    ...(options.execArgv ?? []),
    join(benchDir, 'dist', 'task.js'),
    JSON.stringify(task),
  ];
  const r = await run(process.execPath, args, {
    timeoutMs: options.timeoutMs ?? 30 * 60_000,
  });
  const line = r.stdout
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('RESULT '));
  if (r.code !== 0 || line === undefined) {
    throw new Error(
      `task ${String(task.kind)} failed (exit ${String(r.code)}): ${(r.stderr || r.stdout).slice(-3000)}`,
    );
  }
  return { ...(JSON.parse(line.slice('RESULT '.length)) as TaskResult), wallMs: r.ms };
}

/** has tells whether a program is on $PATH. */
export async function has(cmd: string): Promise<boolean> {
  try {
    const r = await run('sh', ['-c', `command -v ${cmd}`]);
    return r.code === 0;
  } catch {
    return false;
  }
}

export function fmtSec(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

export function fmtStat(s: Stat, f: (v: number) => string): string {
  if (Number.isNaN(s.median)) return 'n/a';
  if (s.samples.length <= 1) return f(s.median);
  return `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

export function fmtBytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] ?? err.message;
  return String(err);
}

/** drain reads a response body to its end and answers how many bytes it held. */
export async function drain(body: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const c of body) n += (c as Buffer).length;
  return n;
}

/** bounded runs `fn(0)` … `fn(count - 1)`, at most `concurrency` at a time. */
export async function bounded(
  count: number,
  concurrency: number,
  fn: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}
