import { execFile } from 'node:child_process';
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { startDistributionRegistry, freePort, type DistributionRegistry } from '@lading/testing';
import { layerSpec } from '../src/commands/build.js';
import { bin, lading, run, tree } from './helpers.js';

let work: string;
let src: string;
let registry: Registry;
let host: string;
let debian: DistributionRegistry;
let debianAuth: DistributionRegistry;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-cli-'));
  src = join(work, 'src');
  await mkdir(join(src, 'bin'), { recursive: true });
  await mkdir(join(src, 'etc', 'deep', 'er'), { recursive: true });
  await writeFile(join(src, 'bin', 'tool'), '#!/bin/sh\necho tool\n');
  await chmod(join(src, 'bin', 'tool'), 0o755);
  await writeFile(join(src, 'etc', 'deep', 'er', 'conf'), 'x=1\n');
  await writeFile(join(src, 'big.bin'), Buffer.alloc(3 * 1024 * 1024, 7));
  await writeFile(join(src, `${'n'.repeat(120)}.txt`), 'long name');
  await symlink('bin/tool', join(src, 'run'));
  registry = createRegistry({ storage: memoryStorage() });
  host = new URL((await registry.listen({ host: '127.0.0.1', port: 0 })).url).host;
  debian = await startDistributionRegistry();
  debianAuth = await startDistributionRegistry({
    htpasswd: { username: 'ci', password: 'right-password' },
  });
});

afterAll(async () => {
  try {
    await registry.close();
    await debian.stop();
    await debianAuth.stop();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

describe('lading usage errors', () => {
  it('exits 2 with one line and a hint when the command is unknown', async () => {
    const r = await lading('frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^lading: unknown command "frobnicate"\nhint: /);
  });

  it('exits 2 on an unknown flag, without a stack trace', async () => {
    const r = await lading('build', src, `${host}/x/y:1`, '--no-such-flag');
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(2);
    expect(r.stderr).not.toMatch(/\bat .*\.js:\d+/);
  });

  it('exits 2 on an invalid reference and quotes it', async () => {
    const r = await lading('build', src, `${host}/UPPER/case:1`);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('UPPER/case');
  });

  it('exits 2 on a bad --platform and a missing destination', async () => {
    expect((await lading('build', src, `${host}/a/b:1`, '--platform', 'linux')).code).toBe(2);
    expect((await lading('build', src)).code).toBe(2);
  });

  it('prints the stack only with --debug', async () => {
    const r = await lading('digest', '127.0.0.1:1/none/here:v1', '--debug');
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/\n\s+at /);
  });

  it('writes no terminal escape a registry sent, with --debug too', async () => {
    const evil = 'no such manifest \u001b]0;PWNED\u0007\u001b[2J\u009b31m';
    const server = createServer((_req, res) => {
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: evil }] }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      for (const flags of [[], ['--debug']]) {
        const r = await lading('manifest', `127.0.0.1:${port}/r:latest`, '--insecure', ...flags);
        expect(r.code).toBe(4);
        // (the one-line error names the reference; the stack quotes the registry)
        if (flags.length > 0) expect(r.stderr).toContain('no such manifest');
        for (const c of ['\u001b', '\u0007', '\u009b']) expect(r.stderr).not.toContain(c);
      }
    } finally {
      server.close();
    }
  });
});

describe('lading build', () => {
  it('writes one DEST for equivalent spellings, so the image digest is the same', async () => {
    for (const spelling of ['d:/x/', 'd://x', 'd:/x/.', 'd:/x'])
      expect(layerSpec(spelling), spelling).toEqual({ dir: 'd', dest: '/x' });
    expect(layerSpec('d')).toEqual({ dir: 'd', dest: '/' });
    expect(layerSpec('d:/../x').dest).toBe('/../x');
    const digests = new Set<string>();
    for (const prefix of ['', '.', '/']) {
      const r = await lading(
        'build',
        src,
        `oci:${join(work, 'prefix')}:v1`,
        '-q',
        '--prefix',
        prefix,
      );
      expect(r.code, r.stderr).toBe(0);
      digests.add(r.stdout.trim());
    }
    expect(digests.size).toBe(1);
  });

  it('pushes a directory to a registry and pulls back the same tree', async () => {
    const r = await lading(
      'build',
      src,
      `${host}/cli/app:v1`,
      '--entrypoint',
      '["/run"]',
      '--env',
      'A=1',
      '--label',
      'k=v',
      '--json',
    );
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout) as { digest: string };
    expect(result.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    const d = await lading('digest', `${host}/cli/app:v1`);
    expect(d.stdout.trim()).toBe(result.digest);
    const cfg = JSON.parse((await lading('config', `${host}/cli/app:v1`, '--json')).stdout) as {
      config: { Entrypoint: string[]; Env: string[]; Labels: Record<string, string> };
    };
    expect(cfg.config.Entrypoint).toEqual(['/run']);
    expect(cfg.config.Env).toContain('A=1');
    expect(cfg.config.Labels).toEqual({ k: 'v' });
    const out = join(work, 'pulled');
    expect((await lading('pull', `${host}/cli/app:v1`, out)).code).toBe(0);
    expect(await tree(out)).toEqual(await tree(src));
    // --scoped (escapes taken from DEST) unpacks a well-behaved image the same way.
    const scoped = join(work, 'pulled-scoped');
    expect((await lading('pull', `${host}/cli/app:v1`, scoped, '--scoped')).code).toBe(0);
    expect(await tree(scoped)).toEqual(await tree(src));
  });

  it('is reproducible: the same digest after touching every file', async () => {
    const a = (await lading('build', src, `${host}/cli/repro:a`, '-q')).stdout.trim();
    const later = new Date(Date.now() + 60_000);
    for (const f of ['bin/tool', 'etc/deep/er/conf', 'big.bin'])
      await utimes(join(src, f), later, later);
    const b = (await lading('build', src, `${host}/cli/repro:b`, '-q')).stdout.trim();
    expect(a).toMatch(/^sha256:/);
    expect(b).toBe(a);
  });

  it('writes an OCI layout that skopeo and umoci unpack to the source tree', async () => {
    const layout = join(work, 'layout');
    const r = await lading('build', src, `oci:${layout}:v1`);
    expect(r.code).toBe(0);
    const bundle = join(work, 'bundle');
    await run('umoci', ['unpack', '--rootless', '--image', `${layout}:v1`, bundle]);
    expect(await tree(join(bundle, 'rootfs'))).toEqual(await tree(src));
  });

  it('pushes from a layout to the CNCF registry, which skopeo pulls back identically', async () => {
    const layout = join(work, 'layout2');
    expect((await lading('build', src, `oci:${layout}:v2`)).code).toBe(0);
    const p = await lading(
      'push',
      `oci:${layout}:v2`,
      `${debian.host}/cli/from-layout:v2`,
      '--json',
    );
    expect(p.code).toBe(0);
    const pushed = JSON.parse(p.stdout) as { digest: string };
    const { stdout } = await run('skopeo', [
      'inspect',
      '--tls-verify=false',
      '--raw',
      `docker://${debian.host}/cli/from-layout:v2`,
    ]);
    const { createHash } = await import('node:crypto');
    expect(`sha256:${createHash('sha256').update(stdout).digest('hex')}`).toBe(pushed.digest);
    const back = join(work, 'skopeo-layout');
    await run('skopeo', [
      'copy',
      '--src-tls-verify=false',
      `docker://${debian.host}/cli/from-layout:v2`,
      `oci:${back}:v2`,
    ]);
    const bundle = join(work, 'bundle2');
    await run('umoci', ['unpack', '--rootless', '--image', `${back}:v2`, bundle]);
    expect(await tree(join(bundle, 'rootfs'))).toEqual(await tree(src));
  });

  it('writes a docker archive that skopeo reads', async () => {
    const file = join(work, 'image.tar');
    expect((await lading('build', src, `docker-archive:${file}:cli/app:v3`)).code).toBe(0);
    const { stdout } = await run('skopeo', ['inspect', `docker-archive:${file}`]);
    expect((JSON.parse(stdout) as { Layers: unknown[] }).Layers).toHaveLength(1);
  });
});

describe('lading against failures', () => {
  it('exits 3 on wrong credentials, leaves no tag, and never prints the password', async () => {
    const r = await lading(
      'build',
      src,
      `${debianAuth.host}/cli/denied:v1`,
      '-u',
      'ci',
      '-p',
      'wrong-password',
    );
    expect(r.code).toBe(3);
    expect(r.stderr).not.toContain('wrong-password');
    // The -p warning, then one error line and its hint.
    expect(r.stderr).toMatch(/^lading: warning: .*--password-stdin\n/);
    expect(r.stderr.split('\n').filter(Boolean).length).toBeLessThanOrEqual(3);
    const ls = await lading(
      'ls',
      `${debianAuth.host}/cli/denied`,
      '-u',
      'ci',
      '-p',
      'right-password',
    );
    expect(ls.code).toBe(4);
  });

  it('auth check exits 0 with push rights and 3 without', async () => {
    expect(
      (
        await lading(
          'auth',
          'check',
          `${debianAuth.host}/cli/check`,
          '-u',
          'ci',
          '-p',
          'right-password',
        )
      ).code,
    ).toBe(0);
    expect(
      (await lading('auth', 'check', `${debianAuth.host}/cli/check`, '-u', 'ci', '-p', 'nope'))
        .code,
    ).toBe(3);
    expect((await lading('auth', 'check', `${debianAuth.host}/cli/check`)).code).toBe(3);
  });

  it('exits 4 for a missing image and 5 when nothing listens', async () => {
    expect((await lading('manifest', `${host}/cli/missing:v1`)).code).toBe(4);
    expect((await lading('digest', `oci:${join(work, 'nope')}:v1`)).code).toBe(4);
    const port = await freePort();
    const r = await lading('cp', `127.0.0.1:${port}/a/b:v1`, `oci:${join(work, 'x')}:v1`);
    expect(r.code).toBe(5);
  });

  it('copies between registries and skips what is there on a re-run', async () => {
    expect((await lading('cp', `${host}/cli/app:v1`, `${debian.host}/cli/copied:v1`)).code).toBe(0);
    const again = JSON.parse(
      (await lading('cp', `${host}/cli/app:v1`, `${debian.host}/cli/copied:v1`, '--json')).stdout,
    ) as { skipped: number };
    expect(again.skipped).toBeGreaterThan(0);
  });

  it('stores credentials with auth login, uses them, and forgets them on logout', async () => {
    const config = join(work, 'docker-config');
    const saved = process.env.DOCKER_CONFIG;
    process.env.DOCKER_CONFIG = config;
    try {
      expect(
        (await lading('auth', 'login', debianAuth.host, '-u', 'ci', '-p', 'wrong-password')).code,
      ).toBe(3);
      const login = await lading(
        'auth',
        'login',
        debianAuth.host,
        '-u',
        'ci',
        '-p',
        'right-password',
      );
      expect(login.code).toBe(0);
      const stored = JSON.parse(await readFile(join(config, 'config.json'), 'utf8')) as {
        auths: Record<string, { auth: string }>;
      };
      expect(Buffer.from(stored.auths[debianAuth.host]!.auth, 'base64').toString()).toBe(
        'ci:right-password',
      );
      expect((await lading('auth', 'check', `${debianAuth.host}/cli/stored`)).code).toBe(0);
      expect((await lading('auth', 'logout', debianAuth.host)).code).toBe(0);
      expect((await lading('auth', 'check', `${debianAuth.host}/cli/stored`)).code).toBe(3);
      // Logged out already: as docker logout, not a failure.
      const again = await lading('auth', 'logout', debianAuth.host);
      expect(again.code).toBe(0);
      expect(again.stdout).toContain('no stored credentials');
      expect((await stat(join(config, 'config.json'))).mode & 0o777).toBe(0o600);

      // A config that is not JSON fails every verb that reads it, with exit 2
      // and without quoting the file (it holds credentials); nothing is
      // rewritten. A symlinked config is written through, the link kept.
      const secret = '{"auths": {"x": {"auth": "c2VjcmV0LXRleHQ="}';
      await writeFile(join(config, 'config.json'), secret);
      for (const argv of [
        ['auth', 'logout', debianAuth.host],
        ['auth', 'login', debianAuth.host, '-u', 'ci', '-p', 'right-password'],
        ['auth', 'check', `${debianAuth.host}/cli/stored`],
      ]) {
        const r = await lading(...argv);
        expect(r.code, argv.join(' ')).toBe(2);
        expect(r.stderr).toContain(
          `lading: credentials file ${join(config, 'config.json')} is not a JSON object; fix or remove it\n`,
        );
        expect(r.stderr).not.toContain('c2Vj');
      }
      expect(await readFile(join(config, 'config.json'), 'utf8')).toBe(secret);
      const real = join(work, 'real-config.json');
      await writeFile(real, '{}', { mode: 0o640 });
      await chmod(real, 0o640);
      await rm(join(config, 'config.json'));
      await symlink(real, join(config, 'config.json'));
      expect(
        (await lading('auth', 'login', debianAuth.host, '-u', 'ci', '-p', 'right-password')).code,
      ).toBe(0);
      expect((await lstat(join(config, 'config.json'))).isSymbolicLink()).toBe(true);
      expect((await stat(real)).mode & 0o777).toBe(0o640);
      expect(JSON.parse(await readFile(real, 'utf8'))).toHaveProperty(['auths', debianAuth.host]);
    } finally {
      if (saved === undefined) delete process.env.DOCKER_CONFIG;
      else process.env.DOCKER_CONFIG = saved;
    }
  });

  it('exits 5 with one line and no stack when the registry dies mid-push', async () => {
    const big = join(work, 'big');
    await mkdir(big, { recursive: true });
    const { randomBytes } = await import('node:crypto');
    for (let i = 0; i < 8; i++) await writeFile(join(big, `r${i}`), randomBytes(8 * 1024 * 1024));
    const victim = await startDistributionRegistry();
    const child = execFile(process.execPath, [bin, 'build', big, `${victim.host}/cli/killed:v1`]);
    const exit = new Promise<{ code: number | null; stderr: string }>((resolve) => {
      let stderr = '';
      child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
      child.on('close', (code) => {
        resolve({ code, stderr });
      });
    });
    // Kill the registry once the upload sessions are open and bytes flow.
    await new Promise<void>((resolve) => {
      const onData = (c: Buffer): void => {
        if (c.toString().includes('authorized')) {
          child.stderr?.off('data', onData);
          resolve();
        }
      };
      child.stderr?.on('data', onData);
    });
    await victim.stop();
    const { code, stderr } = await exit;
    expect(code).toBe(5);
    expect(stderr).toMatch(/^lading: .*\nhint: /m);
    expect(stderr).not.toMatch(/\n\s+at /);
  }, 60_000);

  it('runs as a program with the documented exit code', async () => {
    const err = await run(process.execPath, [bin, 'ls', `${host}/cli/never`]).catch(
      (e: unknown) => e as { code: number; stderr: string },
    );
    expect(err).toMatchObject({ code: 4 });
    expect((err as { stderr: string }).stderr).toMatch(/^lading: /);
  });
});
