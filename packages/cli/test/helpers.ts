import { execFile, spawn } from 'node:child_process';
import { lstat, mkdtemp, readFile, readdir, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { onTestFinished } from 'vitest';
import { TextSink } from '@lading/testing';
import { main } from '../src/index.js';

/** run is promisified execFile. */
export const run = promisify(execFile);

/** bin is the `lading` program. */
export const bin = fileURLToPath(new URL('../bin/lading.js', import.meta.url));

/** lading runs the CLI in-process and collects its output. */
export async function lading(
  ...argv: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new TextSink();
  const stderr = new TextSink();
  const code = await main(argv, { stdout, stderr });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

/**
 * ladingProcess runs the program in a child process, as a user would, on
 * the Node running the tests; one still running after two minutes is
 * killed (SIGKILL) and answers code null.
 */
export function ladingProcess(
  ...argv: string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return programProcess(bin, ...argv);
}

/** programProcess is ladingProcess for another copy of the program (its bin/lading.js). */
export async function programProcess(
  program: string,
  ...argv: string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [program, ...argv], {
      timeout: 120_000,
      killSignal: 'SIGKILL',
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: unknown; stdout?: string; stderr?: string };
    const code = typeof err.code === 'number' ? err.code : null;
    return { code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** ladingJson runs the CLI with --json, expects exit 0 and parses stdout. */
export async function ladingJson<T>(...argv: string[]): Promise<T> {
  const r = await lading(...argv, '--json');
  if (r.code !== 0) throw new Error(`lading ${argv.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** spawnLading runs the program in a child process, with `stdin` piped in when given. */
export function spawnLading(
  argv: readonly string[],
  stdin?: string,
): {
  child: ReturnType<typeof spawn>;
  exit: Promise<{ code: number | null; stdout: string; stderr: string }>;
} {
  const child = spawn(process.execPath, [bin, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin.end(stdin);
  const exit = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    child.on('close', (code) => {
      resolve({ code, stdout, stderr });
    });
  });
  return { child, exit };
}

/**
 * tempDir makes a directory under the OS temp dir, named `<prefix>XXXXXX`,
 * and removes it when the running test finishes, passed or failed. Only a
 * test (or its beforeEach) may call it; elsewhere it throws.
 */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const remove = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    onTestFinished(remove);
  } catch (err) {
    // Outside a test: nothing would remove it later.
    await remove();
    throw err;
  }
  return dir;
}

/** tree reads a directory as path → type:mode:content, the way an unpacked image is compared. */
export async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      const st = await lstat(p);
      const key = relative(dir, p);
      if (st.isSymbolicLink()) out[key] = `l:${await readlink(p)}`;
      else if (st.isDirectory()) {
        out[key] = `d:${(st.mode & 0o777).toString(8)}`;
        await walk(p);
      } else
        out[key] = `f:${(st.mode & 0o777).toString(8)}:${(await readFile(p)).toString('base64')}`;
    }
  };
  await walk(dir);
  return out;
}
