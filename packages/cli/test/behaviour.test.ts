import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  TextSink,
  recordingProxy,
  startDistributionRegistry,
  type DistributionRegistry,
} from '@lading/testing';
import { Output, indeterminateBar } from '../src/output.js';
import { ErrorCode, LadingError } from '@lading/core';
import { classify, redact, sanitize } from '../src/exit.js';
import { bin, lading, run, spawnLading } from './helpers.js';

let work: string;
let cncf: DistributionRegistry;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-cli-behaviour-'));
  cncf = await startDistributionRegistry();
});

afterAll(async () => {
  try {
    await cncf.stop();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

/**
 * loadedSources runs the program with a resolve hook that records every
 * file it loads, and answers the source files behind them: a file of the
 * bundle (dist/bundle/) stands for the sources its source map lists.
 */
async function loadedSources(...argv: string[]): Promise<{ stdout: string; sources: string[] }> {
  const hook = `data:text/javascript,${encodeURIComponent(
    `export async function resolve(s, c, next) { const r = await next(s, c); if (r.url.startsWith('file:')) process.stderr.write('LOAD ' + r.url + '\\n'); return r; }`,
  )}`;
  // In-thread hooks where Node has them (≥ 22.15): the off-thread ones of
  // register() write from another thread, and a short run can exit first.
  const register = `data:text/javascript,${encodeURIComponent(
    `import * as m from 'node:module';
    if (typeof m.registerHooks === 'function') m.registerHooks({ resolve(s, c, next) { const r = next(s, c); if (r.url.startsWith('file:')) process.stderr.write('LOAD ' + r.url + '\\n'); return r; } });
    else m.register(${JSON.stringify(hook)});`,
  )}`;
  const { stdout, stderr } = await run(process.execPath, ['--import', register, bin, ...argv]);
  const files = [...stderr.matchAll(/^LOAD (\S+)$/gm)].map((m) => fileURLToPath(m[1] ?? ''));
  const sources: string[] = [];
  for (const file of files) {
    if (!file.includes(`${sep}dist${sep}bundle${sep}`)) {
      sources.push(file);
      continue;
    }
    const map = JSON.parse(await readFile(`${file}.map`, 'utf8')) as { sources: string[] };
    sources.push(...map.sources.map((s) => resolve(dirname(file), s)));
  }
  return { stdout, sources };
}

const sdk =
  /packages[/\\](core|layers|remote|layout|registry)[/\\]|node_modules[/\\].*(undici|cli-progress)/;

describe('lading start-up', () => {
  it('loads no @lading package and no progress library for --version and --help', async () => {
    for (const arg of ['--version', '--help']) {
      const { stdout, sources } = await loadedSources(arg);
      expect(stdout.length).toBeGreaterThan(0);
      expect(sources.length).toBeGreaterThan(0);
      expect(sources.filter((s) => sdk.test(s))).toEqual([]);
    }
    // The same hook does see them when a command runs.
    const { sources } = await loadedSources('digest', '--help');
    expect(sources.some((s) => /packages[/\\]core[/\\]/.test(s))).toBe(true);
  });
});

describe('lading errors', () => {
  it('carries the error code in --json errors', async () => {
    const r = await lading('manifest', `${cncf.host}/behaviour/missing:v1`, '--json');
    expect(r.code).toBe(4);
    const line = JSON.parse(r.stderr.trim()) as { error: string; code: string; hint: string };
    expect(line.code).toBe('NOT_FOUND');
    expect(line.error).toMatch(/missing|not found|unknown/i);
    const usage = await lading('build', '--json');
    expect(JSON.parse(usage.stderr.trim())).toMatchObject({ code: 'USAGE' });
  });

  it('prints a one-line hint, not the whole usage, when an argument is missing', async () => {
    for (const argv of [['cp', 'only-one'], ['build'], ['pull'], ['auth', 'bogus']]) {
      const r = await lading(...argv);
      expect(r.code).toBe(2);
      const lines = r.stderr.split('\n').filter(Boolean);
      expect(lines).toHaveLength(2);
      expect(lines[1]).toMatch(/^hint: /);
      expect(r.stderr).not.toContain('Usage:');
    }
  });

  it('strips terminal control sequences from registry-supplied messages', async () => {
    const evil = '\u001b]0;owned\u0007\u001b[31mred\u001b[0m \u009b2Jgone\r\u0008line\nnext';
    const server: Server = createServer((req, res) => {
      if (req.url === '/v2/') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        return;
      }
      res
        .writeHead(400, { 'content-type': 'application/json' })
        .end(JSON.stringify({ errors: [{ code: 'DENIED', message: evil, detail: evil }] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const r = await lading('ls', `127.0.0.1:${port}/evil/repo`);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('red');
      // eslint-disable-next-line no-control-regex -- asserting control characters are gone
      expect(r.stderr).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
      expect(r.stderr.split('\n').filter(Boolean).length).toBeLessThanOrEqual(2);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    expect(sanitize('a\u001b[1;31mb\u001b]8;;http://x\u001b\\c\u0007d\u0085e')).toBe('abcde');
    expect(sanitize('one\ntwo\tthree', true)).toBe('one\ntwo\tthree');
    expect(sanitize('one\ntwo')).toBe('one two');
  });

  it('prints one line per tag and repository, whatever the names a registry sends', async () => {
    const server: Server = createServer((req, res) => {
      const body =
        req.url === '/v2/'
          ? {}
          : req.url?.startsWith('/v2/_catalog')
            ? { repositories: ['a/b', 'x\ny'] }
            : { name: 'a/b', tags: ['ok', 'nl\nfake: line'] };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const tags = await lading('ls', `127.0.0.1:${port}/a/b`);
      expect(tags.code).toBe(0);
      expect(tags.stdout.trim().split('\n')).toEqual(['ok', 'nl fake: line']);
      const repos = await lading('catalog', `127.0.0.1:${port}`);
      expect(repos.code).toBe(0);
      expect(repos.stdout.trim().split('\n')).toEqual(['a/b', 'x y']);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('refuses an operand a command does not take, with exit 2', async () => {
    for (const argv of [
      ['validate', 'oci:/nonexistent/a:v1', 'oci:/nonexistent/b:v1'],
      ['cp', 'oci:/nonexistent/a:v1', 'oci:/nonexistent/b:v1', 'oci:/nonexistent/c:v1'],
      ['digest', 'x/y:1', 'x/y:2'],
      ['serve', 'extra'],
    ]) {
      const r = await lading(...argv);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^lading: \w+: unexpected argument "[^"]+"\nhint: /);
    }
  });

  it('gives every --json error a hint key, and a local read failure its hint', () => {
    const stderr = new TextSink();
    new Output('json', new TextSink(), stderr).error('something failed', undefined, 'UNSUPPORTED');
    expect(JSON.parse(stderr.text)).toEqual({
      error: 'something failed',
      code: 'UNSUPPORTED',
      hint: null,
    });
    const io = classify(new LadingError(ErrorCode.Io, 'cannot list src/d'));
    expect(io.code).toBe(1);
    expect(io.hint).toMatch(/local file/);
  });

  it('refuses an argument that is not UTF-8 instead of writing to an altered path', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lading-utf8-'));
    try {
      // The shell passes the byte 0xff; Node would decode it as U+FFFD.
      const script = `exec "$0" "$1" build "$2" -t "oci:$2/lay$(printf '\\377'):1"`;
      const r = await run('sh', ['-c', script, process.execPath, bin, dir]).then(
        () => ({ code: 0, stderr: '' }),
        (e: unknown) => e as { code: number; stderr: string },
      );
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('is not valid UTF-8');
      expect(await readdir(dir)).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('never prints a password typed into a reference', async () => {
    for (const argv of [
      ['digest', 'alice:Secret123@127.0.0.1:1/a/b:v1'],
      ['digest', 'alice:Secret123@127.0.0.1:1/a/b:v1', '--json'],
      ['cp', 'http://alice:Secret123@127.0.0.1:1/a/b:v1', 'oci:/nonexistent/x:v1'],
    ]) {
      const r = await lading(...argv);
      expect(r.code).not.toBe(0);
      expect(r.stdout + r.stderr).not.toContain('Secret123');
    }
    expect(redact('invalid reference "bob:pw@host/x": y')).toBe(
      'invalid reference "***:***@host/x": y',
    );
    const pinned = `ubuntu:22.04@sha256:${'a'.repeat(64)}`;
    expect(redact(`not found: ${pinned}`)).toBe(`not found: ${pinned}`);
  });
});

describe('lading progress', () => {
  it('draws a bar of unknown total as a moving block, never as full', async () => {
    const tty = Object.assign(new TextSink(), { isTTY: true, columns: 120, rows: 40 });
    const out = new Output('tty', new TextSink(), tty);
    await out.prepare();
    out.progress({ type: 'blob-start', kind: 'layer', id: 'layer-0' });
    for (let i = 1; i <= 30; i++)
      out.progress({ type: 'blob-progress', kind: 'layer', id: 'layer-0', bytes: i * 1000 });
    out.stop();
    expect(tty.text).toContain('|');
    expect(tty.text).not.toContain('\u2588'.repeat(40));
    expect(tty.text).toContain('\u2591');
    expect(tty.text).toContain('/?');
    const frames = new Set(Array.from({ length: 70 }, (_, i) => indeterminateBar(i)));
    expect(frames.size).toBeGreaterThan(10);
    for (const f of frames) {
      expect(f).toHaveLength(40);
      expect(f).not.toBe('\u2588'.repeat(40));
    }
  });
});

describe('lading interrupted', () => {
  it('exits 130 on Ctrl-C mid-push, cancels the upload sessions and leaves no tag', async () => {
    const big = join(work, 'big');
    await mkdir(big, { recursive: true });
    for (let i = 0; i < 6; i++) await writeFile(join(big, `r${i}`), randomBytes(8 * 1024 * 1024));
    const proxy = await recordingProxy(cncf.url);
    try {
      const { child, exit } = spawnLading(['build', big, `${proxy.host}/behaviour/cancel:v1`]);
      // Interrupt once sessions are open and layer bytes flow.
      await new Promise<void>((resolve) => {
        const poll = setInterval(() => {
          if (proxy.requests.some((r) => r.method === 'PATCH' && r.bodyBytes > 0)) {
            clearInterval(poll);
            resolve();
          }
        }, 20);
      });
      child.kill('SIGINT');
      const { code, stderr } = await exit;
      expect(code).toBe(130);
      expect(stderr).toMatch(/^lading: interrupted$/m);
      expect(stderr).not.toMatch(/\n\s+at /);
      expect(proxy.requests.some((r) => r.method === 'PUT' && r.path.includes('/manifests/'))).toBe(
        false,
      );
      expect(
        proxy.requests.some((r) => r.method === 'DELETE' && r.path.includes('/blobs/uploads/')),
      ).toBe(true);
    } finally {
      await proxy.close();
    }
    expect((await lading('manifest', `${cncf.host}/behaviour/cancel:v1`)).code).toBe(4);
  }, 60_000);

  it('exits 130 on Ctrl-C while writing a docker archive and leaves no file', async () => {
    // Enough incompressible data that the write is still running when the
    // archive's temporary file appears: only then is Ctrl-C sent (a fixed
    // delay raced a fast machine, which finished the build first).
    const big = join(work, 'big-archive');
    await mkdir(big, { recursive: true });
    for (let i = 0; i < 8; i++) await writeFile(join(big, `r${i}`), randomBytes(16 * 1024 * 1024));
    const dir = join(work, 'archive-out');
    await mkdir(dir, { recursive: true });
    const { child, exit } = spawnLading(['build', big, `docker-archive:${join(dir, 'a.tar')}:x:1`]);
    const deadline = Date.now() + 30_000;
    while ((await readdir(dir)).length === 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 5));
    child.kill('SIGINT');
    const { code } = await exit;
    expect(code).toBe(130);
    expect(await readdir(dir)).toEqual([]);
  }, 60_000);
});
