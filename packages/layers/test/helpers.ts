import { spawn } from 'node:child_process';
import { chmodSync, lstatSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack } from 'tar-stream';
import { onTestFinished } from 'vitest';
import { encodeTarHeader, tarPadding, tarTrailer, type TarHeader } from '@lading/core/internal';

/**
 * tempDir makes a directory under the OS temp dir, named `<prefix>XXXXXX`,
 * and removes it when the running test finishes, passed or failed. Only a
 * test (or its beforeEach) may call it; elsewhere it throws.
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  try {
    onTestFinished(() => {
      removeTree(dir);
    });
  } catch (err) {
    // Outside a test: nothing would remove it later.
    removeTree(dir);
    throw err;
  }
  return dir;
}

/**
 * removeTree removes `path` and everything under it. A tree extracted from a
 * hostile tarball may hold directories without write or search permission,
 * which rm cannot empty unless running as root; those are opened up and the
 * removal tried again.
 */
function removeTree(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    openUp(Buffer.from(path));
    rmSync(path, { recursive: true, force: true });
  }
}

// Paths as bytes: a tree may hold names that are not UTF-8.
function openUp(path: Buffer): void {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (st?.isDirectory() !== true) return;
  chmodSync(path, 0o700);
  for (const name of readdirSync(path, { encoding: 'buffer' })) {
    openUp(Buffer.concat([path, Buffer.from('/'), name]));
  }
}

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

/**
 * encodedTar is a tar of entries whose headers core's encodeTarHeader
 * writes (PAX records as lading writes them); mode 0644, owner 0 and time
 * 0 unless given, the size from the body.
 */
export function encodedTar(
  ...entries: { header: Partial<TarHeader> & Pick<TarHeader, 'name'>; body?: string }[]
): Buffer {
  const parts: Buffer[] = [];
  for (const { header, body = '' } of entries) {
    const data = Buffer.from(body);
    parts.push(
      encodeTarHeader({
        type: 'file',
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        ...header,
        size: data.length,
      }),
      data,
      Buffer.alloc(tarPadding(data.length)),
    );
  }
  parts.push(tarTrailer);
  return Buffer.concat(parts);
}
