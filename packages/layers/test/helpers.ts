import { spawn } from 'node:child_process';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack } from 'tar-stream';

/** collect reads a stream into one buffer (test data only). */
export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipeline(
    stream,
    new Writable({
      write(c: Buffer, _e, cb) {
        chunks.push(c);
        cb();
      },
    }),
  );
  return Buffer.concat(chunks);
}

export interface TarEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'fifo';
  body?: string | Buffer;
  linkname?: string;
  mode?: number;
}

/** makeTar builds a tarball with tar-stream (used for hostile tarballs too). */
export async function makeTar(entries: TarEntry[]): Promise<Buffer> {
  const p = pack();
  const done = collect(p as unknown as Readable);
  for (const e of entries) {
    const body = e.body === undefined ? undefined : Buffer.from(e.body);
    await new Promise<void>((resolve, reject) => {
      const header = {
        name: e.name,
        type: e.type ?? 'file',
        mode: e.mode ?? (e.type === 'directory' ? 0o755 : 0o644),
        mtime: new Date(0),
        ...(e.linkname === undefined ? {} : { linkname: e.linkname }),
        ...(body === undefined ? {} : { size: body.length }),
      };
      const cb = (err?: Error | null) => {
        if (err) reject(err);
        else resolve();
      };
      p.entry(header, body ?? Buffer.alloc(0), cb);
    });
  }
  p.finalize();
  return done;
}

/** run spawns a command, feeds it `input`, and returns stdout, stderr and the exit code. */
export function run(
  cmd: string,
  args: string[],
  input?: Buffer,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** isPending tells whether a promise is still pending after the microtask queue drains. */
export async function isPending(p: Promise<unknown>): Promise<boolean> {
  const marker = Symbol('pending');
  const r = await Promise.race([
    p.then(
      () => 'settled',
      () => 'settled',
    ),
    new Promise((res) => {
      setImmediate(() => {
        res(marker);
      });
    }),
  ]);
  return r === marker;
}

/** pseudoRandom returns deterministic, poorly compressible bytes. */
export function pseudoRandom(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** textish returns deterministic compressible bytes. */
export function textish(n: number, seed = 1): Buffer {
  const words = ['layer', 'digest', 'tar', 'gzip', 'stream', 'image', 'oci', 'registry', '\n'];
  const out: string[] = [];
  let len = 0;
  let x = seed;
  while (len < n) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const w = words[x % words.length]!;
    out.push(w, ' ');
    len += w.length + 1;
  }
  return Buffer.from(out.join('')).subarray(0, n);
}
