import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startDistributionRegistry } from '@lading/testing';
import { benchDir } from './util.js';

/** RegistryKind names the registries the bench talks to. */
export type RegistryKind = 'distribution' | 'lading';

export const registryLabel: Record<RegistryKind, string> = {
  distribution: 'Debian docker-registry',
  lading: '@lading/registry',
};

/** BenchRegistry is a registry running in its own process on 127.0.0.1. */
export interface BenchRegistry {
  readonly kind: RegistryKind;
  readonly url: string;
  /** host is `127.0.0.1:<port>`. */
  readonly host: string;
  /**
   * cpuMs answers the CPU time (user + system) the registry process has used
   * so far, from /proc (Debian registry only; undefined where unknown).
   */
  cpuMs(): number | undefined;
  /** stop ends the registry; for @lading/registry it answers the server's peak RSS (KiB). */
  stop(): Promise<number | undefined>;
}

/** RegistryAuthSpec turns on auth with one user. */
export interface RegistryAuthSpec {
  readonly type: 'basic' | 'token';
  readonly username: string;
  readonly password: string;
}

/** startLadingRegistry runs @lading/registry in a child process (dist/serve-registry.js). */
export function startLadingRegistry(
  options: { storage?: 'memory' | 'filesystem'; auth?: RegistryAuthSpec } = {},
): Promise<BenchRegistry> {
  const child = spawn(
    process.execPath,
    [
      join(benchDir, 'dist', 'serve-registry.js'),
      JSON.stringify({ storage: options.storage ?? 'filesystem', auth: options.auth }),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout });
  let rss: ((v: number | undefined) => void) | undefined;
  const exited = new Promise<void>((r) => {
    child.once('exit', () => {
      r();
    });
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('@lading/registry did not start within 15 s'));
    }, 15_000);
    child.once('error', reject);
    void exited.then(() => {
      clearTimeout(timer);
      rss?.(undefined);
      reject(new Error('@lading/registry exited during start-up'));
    });
    lines.on('line', (line) => {
      if (line.startsWith('READY ')) {
        clearTimeout(timer);
        const url = line.slice('READY '.length).trim();
        resolve({
          kind: 'lading',
          url,
          host: new URL(url).host,
          cpuMs: () => processCpuMs(child.pid ?? 0),
          stop: async () => {
            const answer = new Promise<number | undefined>((r) => (rss = r));
            child.stdin.end();
            const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
            const v = await answer;
            await exited;
            clearTimeout(kill);
            return v;
          },
        });
      } else if (line.startsWith('RSS ')) {
        rss?.(Number(line.slice(4)));
      }
    });
  });
}

/**
 * processCpuMs reads a process's user + system time from /proc/PID/stat
 * (fields 14 and 15, in clock ticks of 1/100 s on Linux).
 */
export function processCpuMs(pid: number): number | undefined {
  return pid > 0 ? statCpuMsSync(`/proc/${pid}/stat`) : undefined;
}

/** statCpuMsSync reads user + system time from a /proc stat file (a process's, or a thread's under task/). */
export function statCpuMsSync(path: string): number | undefined {
  try {
    return cpuMsOf(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

function cpuMsOf(stat: string): number | undefined {
  // Fields after the command name, which sits in parentheses and may hold spaces.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]);
  return Number.isFinite(ticks) ? ticks * 10 : undefined;
}

/** startDebianRegistry runs the CNCF distribution registry with packages/testing's helper. */
export async function startDebianRegistry(
  options: { htpasswd?: { username: string; password: string } } = {},
): Promise<BenchRegistry> {
  const r = await startDistributionRegistry(
    options.htpasswd === undefined ? {} : { htpasswd: options.htpasswd },
  );
  return {
    kind: 'distribution',
    url: r.url,
    host: r.host,
    cpuMs: () => processCpuMs(r.pid),
    stop: async () => {
      await r.stop();
      return undefined;
    },
  };
}

export function startRegistry(kind: RegistryKind): Promise<BenchRegistry> {
  return kind === 'lading' ? startLadingRegistry() : startDebianRegistry();
}
