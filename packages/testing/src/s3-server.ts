import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** S3Server is a running S3-compatible store started by {@link startS3}. */
export interface S3Server {
  /** endpoint is `http://127.0.0.1:<port>` (path-style addressing). */
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly region: string;
  /** stop ends every process of the store and deletes its data. */
  stop(): Promise<void>;
}

/**
 * s3ToolsDir is where `s3-up.sh` lives: `$LADING_S3_TOOLS`, else
 * `shared/tools/s3` beside the clone (`<repo>/../shared/tools/s3`).
 */
export function s3ToolsDir(): string {
  const env = process.env.LADING_S3_TOOLS;
  if (env !== undefined && env !== '') return env;
  const repo = fileURLToPath(new URL('../../..', import.meta.url));
  return join(repo, '..', 'shared', 'tools', 's3');
}

/**
 * startS3 runs `s3-up.sh` (OpenStack Swift with its S3 API on 127.0.0.1; the
 * script installs its Debian packages when missing) and answers its
 * endpoint and keys. It fails, never skips, when the store cannot start.
 */
export async function startS3(): Promise<S3Server> {
  const dir = s3ToolsDir();
  let stdout = '';
  // s3-up.sh gives its servers a fixed time to listen, which a loaded
  // machine can exceed: one more attempt (it cleans up after a failure).
  for (let attempt = 1; ; attempt++) {
    try {
      ({ stdout } = await run('bash', [join(dir, 's3-up.sh')], {
        timeout: 300_000,
        maxBuffer: 1024 * 1024,
      }));
      break;
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr ?? '';
      // A failed start leaves its data directory behind for inspection: drop it.
      const left = /data left in (\S+?)\)/.exec(stderr)?.[1];
      if (left !== undefined && existsSync(join(left, '.s3-up-data'))) {
        rmSync(left, { recursive: true, force: true });
      }
      if (attempt < 2) continue;
      throw new Error(`s3-up.sh failed twice (tools at ${dir}):\n${stderr.slice(-4000)}`, {
        cause: err,
      });
    }
  }
  const vars = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m?.[1] !== undefined) vars.set(m[1], (m[2] ?? '').replace(/\\(.)/g, '$1'));
  }
  const need = (k: string): string => {
    const v = vars.get(k);
    if (v === undefined) throw new Error(`s3-up.sh printed no ${k}`);
    return v;
  };
  const pids = need('S3_PIDS')
    .split(' ')
    .filter((p) => p !== '');
  const dataDir = need('S3_DATA_DIR');
  return {
    endpoint: need('S3_ENDPOINT'),
    accessKeyId: need('S3_ACCESS_KEY'),
    secretAccessKey: need('S3_SECRET_KEY'),
    region: vars.get('S3_REGION') ?? 'us-east-1',
    stop: async () => {
      await run('bash', [join(dir, 's3-down.sh'), ...pids], {
        env: { ...process.env, S3_DATA_DIR: dataDir },
        timeout: 60_000,
      });
    },
  };
}
