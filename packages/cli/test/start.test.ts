import { cp, mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import * as nodeModule from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  recordingProxy,
  startDistributionRegistry,
  type DistributionRegistry,
} from '@lading/testing';
import { programProcess, run } from './helpers.js';

const cliDir = fileURLToPath(new URL('..', import.meta.url));

let work: string;
let cncf: DistributionRegistry;
/** installed is a copy of bin/ and a fresh bundle, laid out as an installed package (no dist/main.js, no tsconfig.json). */
let installed: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-cli-start-'));
  cncf = await startDistributionRegistry();
  installed = join(work, 'installed');
  await cp(join(cliDir, 'bin'), join(installed, 'bin'), { recursive: true });
  await run(process.execPath, [
    join(cliDir, 'scripts', 'bundle.mjs'),
    '--outdir',
    join(installed, 'dist', 'bundle'),
  ]);
}, 60_000);

afterAll(async () => {
  try {
    await cncf.stop();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

const exec = programProcess;

describe('the bundled CLI', () => {
  it('copies registry → registry and → OCI layout on its own, and exits with the digest when done', async () => {
    const ladingBin = join(installed, 'bin', 'lading.js');
    const src = join(work, 'src');
    await mkdir(src);
    await writeFile(join(src, 'hello.txt'), 'hello\n');
    const ref = `${cncf.host}/start/app:v1`;
    const built = await exec(ladingBin, 'build', src, ref, '--quiet');
    expect(built).toMatchObject({ code: 0, stderr: '' });
    const digest = built.stdout.trim();
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);

    const copied = await exec(ladingBin, 'cp', ref, `${cncf.host}/start/copy:v1`, '--quiet');
    expect(copied).toEqual({ code: 0, stdout: `${digest}\n`, stderr: '' });
    const layout = join(work, 'layout');
    const toLayout = await exec(ladingBin, 'cp', ref, `oci:${layout}:v1`, '--quiet');
    expect(toLayout).toEqual({ code: 0, stdout: `${digest}\n`, stderr: '' });
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    expect(index.manifests.map((m) => m.digest)).toEqual([digest]);
    expect(await exec(ladingBin, 'digest', `${cncf.host}/start/copy:v1`)).toMatchObject({
      code: 0,
      stdout: `${digest}\n`,
    });
  });

  it("pings the destination registry alongside the source's first request, the GET of its manifest", async () => {
    const ladingBin = join(installed, 'bin', 'lading.js');
    const src = join(work, 'src-ping');
    await mkdir(src);
    await writeFile(join(src, 'a.txt'), 'a\n');
    // One proxy in front of both sides: its arrival order spans them.
    const proxy = await recordingProxy(cncf.url);
    try {
      const ref = `${proxy.host}/start/ping:v1`;
      const digest = (await exec(ladingBin, 'build', src, ref, '--quiet')).stdout.trim();
      proxy.clear();
      const r = await exec(ladingBin, 'cp', ref, `${proxy.host}/start/pinged:v1`, '--quiet');
      expect(r).toEqual({ code: 0, stdout: `${digest}\n`, stderr: '' });
      const first = proxy.requests
        .slice(0, 2)
        .map((q) => `${q.method} ${q.path}`)
        .sort();
      // The destination's ping goes out beside the source's first request,
      // its manifest GET by tag (which stands in for the source's ping);
      // one ping in all, and no HEAD of the source's manifest.
      expect(first).toEqual(['GET /v2/', 'GET /v2/start/ping/manifests/v1']);
      expect(proxy.requests.filter((q) => q.path === '/v2/')).toHaveLength(1);
      expect(
        proxy.requests.filter((q) => q.method === 'HEAD' && q.path.includes('/start/ping/')),
      ).toEqual([]);
      // Reading a manifest, or building on a base, takes one request: the
      // GET by tag (no ping, no HEAD before it).
      proxy.clear();
      const m = await exec(ladingBin, 'manifest', ref);
      expect(m.code).toBe(0);
      expect(proxy.requests.map((q) => `${q.method} ${q.path}`)).toEqual([
        'GET /v2/start/ping/manifests/v1',
      ]);
      proxy.clear();
      const built = await exec(
        ladingBin,
        'build',
        src,
        `oci:${join(work, 'on-base')}:v1`,
        '--base',
        ref,
        '--quiet',
      );
      expect(built.code).toBe(0);
      expect(
        proxy.requests
          .filter((q) => q.path.includes('/manifests/'))
          .map((q) => `${q.method} ${q.path}`),
      ).toEqual(['GET /v2/start/ping/manifests/v1']);
    } finally {
      await proxy.close();
    }
  });

  it('exits with the error code and one line when the registry is not there', async () => {
    const r = await exec(join(installed, 'bin', 'lading.js'), 'cp', '127.0.0.1:1/a/b:c', 'oci:x');
    expect(r.code).toBe(5);
    expect(r.stderr.split('\n')[0]).toMatch(/^lading: .*127\.0\.0\.1:1/);
  });
});

/** fakeCli lays out bin/start.js over a dist/main.js and a dist/bundle/main.js that say which they are. */
async function fakeCli(name: string, checkout: boolean): Promise<string> {
  const dir = join(work, name);
  await cp(join(cliDir, 'bin', 'start.js'), join(dir, 'bin', 'start.js'));
  await mkdir(join(dir, 'dist', 'bundle'), { recursive: true });
  await writeFile(join(dir, 'dist', 'main.js'), "export const main = 'dist';\n");
  await writeFile(join(dir, 'dist', 'bundle', 'main.js'), "export const main = 'bundle';\n");
  await writeFile(join(dir, 'dist', '.tsbuildinfo'), '{}');
  await writeFile(
    join(dir, 'dist', 'bundle', 'inputs.json'),
    JSON.stringify({ builtAt: Date.now() + 60_000, inputs: ['dist/.tsbuildinfo'] }),
  );
  if (checkout) await writeFile(join(dir, 'tsconfig.json'), '{}');
  return dir;
}

/** which answers the main start() loads in `dir`. */
async function which(dir: string): Promise<string> {
  const script = `import { start } from ${JSON.stringify(join(dir, 'bin', 'start.js'))}; console.log((await start('cp')).main);`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script]);
  return stdout.trim();
}

describe('bin/start.js', () => {
  it('runs the bundle when it is newer than every package it was built from', async () => {
    expect(await which(await fakeCli('current', true))).toBe('bundle');
  });

  it('runs dist/ when a package was rebuilt after the bundle (tsc -b without the bundle step)', async () => {
    const dir = await fakeCli('stale', true);
    const later = new Date(Date.now() + 120_000);
    await utimes(join(dir, 'dist', '.tsbuildinfo'), later, later);
    expect(await which(dir)).toBe('dist');
  });

  it('runs dist/ when there is no bundle, and an installed bundle without checking', async () => {
    const none = await fakeCli('none', true);
    await rm(join(none, 'dist', 'bundle'), { recursive: true });
    expect(await which(none)).toBe('dist');
    const dir = await fakeCli('packed', false);
    await rm(join(dir, 'dist', '.tsbuildinfo'));
    expect(await which(dir)).toBe('bundle');
  });

  it('sets the wasm tiering budget once the CLI is loaded, after libdeflate for build and append, never for serve', async () => {
    const dir = await fakeCli('tiers', false);
    // The fake CLI logs its loading and compileDeflate; start.js's flags are logged by a patched node:v8.
    await writeFile(
      join(dir, 'dist', 'bundle', 'main.js'),
      "globalThis.log.push('loaded');\nexport const main = 'bundle';\nexport async function compileDeflate() { globalThis.log.push('compileDeflate'); }\n",
    );
    const startJs = pathToFileURL(join(dir, 'bin', 'start.js')).href;
    const seen: Record<string, string[]> = {};
    for (const verb of ['build', 'append', 'serve', 'cp', 'digest']) {
      const script = `import v8 from 'node:v8';
        globalThis.log = [];
        v8.setFlagsFromString = (flag) => globalThis.log.push(flag);
        const { start } = await import(${JSON.stringify(startJs)});
        await start(${JSON.stringify(verb)});
        console.log(JSON.stringify(globalThis.log));`;
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script]);
      seen[verb] = JSON.parse(stdout) as string[];
    }
    const budget = '--wasm-tiering-budget=2147483647';
    const after = ['loaded', 'compileDeflate', budget];
    const now = ['loaded', budget];
    expect(seen).toEqual({ build: after, append: after, serve: ['loaded'], cp: now, digest: now });
  });
});

describe('the compile cache', () => {
  it('lives under XDG_CACHE_HOME where the runtime has one, and an unwritable place changes nothing', async () => {
    const ladingBin = join(installed, 'bin', 'lading.js');
    const cache = join(work, 'cache');
    await mkdir(cache);
    const env = { ...process.env, XDG_CACHE_HOME: cache, NODE_COMPILE_CACHE: '' };
    const { stdout, stderr } = await run(process.execPath, [ladingBin, '--version'], { env });
    expect({ stdout, stderr }).toEqual({ stdout: '0.1.0\n', stderr: '' });
    // Node ≥ 22.1 has module.enableCompileCache; on Node 20 nothing is written.
    const cached = await readdir(join(cache, 'lading', 'node-compile-cache')).catch(() => []);
    const hasCache = typeof (nodeModule as { enableCompileCache?: unknown }).enableCompileCache;
    expect(cached.length > 0).toBe(hasCache === 'function');
    // A cache path under a regular file cannot be created: the command runs as if there were none.
    const blocked = { ...env, XDG_CACHE_HOME: join(installed, 'bin', 'lading.js') };
    const r = await run(process.execPath, [ladingBin, '--version'], { env: blocked });
    expect({ stdout: r.stdout, stderr: r.stderr }).toEqual({ stdout: '0.1.0\n', stderr: '' });
  });
});
