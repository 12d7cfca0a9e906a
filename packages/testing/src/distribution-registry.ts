import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';

/** DistributionRegistryOptions configure {@link startDistributionRegistry}. */
export interface DistributionRegistryOptions {
  /** htpasswd turns on basic auth with this single user. */
  readonly htpasswd?: { readonly username: string; readonly password: string };
  /** binary overrides the path of the registry program (default /usr/bin/docker-registry or $PATH). */
  readonly binary?: string;
}

/** DistributionRegistry is a running CNCF distribution registry. */
export interface DistributionRegistry {
  /** url is `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** host is `127.0.0.1:<port>`, the registry part of a reference. */
  readonly host: string;
  readonly port: number;
  /** pid is the registry process's id (to read its CPU time from /proc, say). */
  readonly pid: number;
  /** dataDir is the registry's storage root (its `rootdirectory`). */
  readonly dataDir: string;
  /** stop kills the registry and removes its storage. */
  stop(): Promise<void>;
}

/** freePort asks the kernel for a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => {
        resolve(port);
      });
    });
  });
}

function findBinary(explicit: string | undefined): string {
  const candidates =
    explicit !== undefined
      ? [explicit]
      : ['/usr/bin/docker-registry', '/usr/local/bin/docker-registry'];
  for (const c of candidates) if (existsSync(c)) return c;
  for (const dir of explicit !== undefined ? [] : (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, 'docker-registry'))) return join(dir, 'docker-registry');
  }
  throw new Error(
    'docker-registry (CNCF distribution) is not installed; run `bash scripts/ensure-peers.sh` first',
  );
}

async function waitUntilUp(url: string, child: ChildProcess, logs: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`docker-registry exited during start-up:\n${logs()}`);
    try {
      const res = await fetch(`${url}/v2/`);
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not answer /v2/ within 15 s:\n${logs()}`);
}

/**
 * startDistributionRegistry runs the Debian `docker-registry` (CNCF
 * distribution 2.8) on 127.0.0.1 with a throwaway config: filesystem storage
 * in a temp dir, deletes enabled, and htpasswd (bcrypt) auth when asked.
 */
export async function startDistributionRegistry(
  options: DistributionRegistryOptions = {},
): Promise<DistributionRegistry> {
  const binary = findBinary(options.binary);
  const dir = await mkdtemp(join(tmpdir(), 'lading-distribution-'));
  const port = await freePort();
  const lines = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: lading-test-${port}`,
  ];
  if (options.htpasswd !== undefined) {
    const hash = bcrypt.hashSync(options.htpasswd.password, 4);
    await writeFile(join(dir, 'htpasswd'), `${options.htpasswd.username}:${hash}\n`);
    lines.push(
      'auth:',
      '  htpasswd:',
      '    realm: lading-test',
      `    path: ${join(dir, 'htpasswd')}`,
    );
  }
  const config = join(dir, 'config.yml');
  await writeFile(config, lines.join('\n') + '\n');
  const child = spawn(binary, ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (b: Buffer): void => {
    if (output.length < 16_384) output += b.toString('utf8');
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const spawnError = new Promise<never>((_, reject) => {
    child.once('error', reject);
  });
  spawnError.catch(() => undefined);
  const url = `http://127.0.0.1:${port}`;
  try {
    await Promise.race([waitUntilUp(url, child, () => output), spawnError]);
  } catch (err) {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  let stopped: Promise<void> | undefined;
  return {
    url,
    host: `127.0.0.1:${port}`,
    port,
    pid: child.pid ?? 0,
    dataDir: join(dir, 'data'),
    stop(): Promise<void> {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const exit = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
          await exit;
          clearTimeout(timer);
        }
        await rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

/** htpasswdEntry returns one `user:bcrypt-hash` htpasswd line (cost 4: tests only). */
export function htpasswdEntry(username: string, password: string): string {
  return `${username}:${bcrypt.hashSync(password, 4)}`;
}
