import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import {
  TextSink,
  recordingProxy,
  startDistributionRegistry,
  type DistributionRegistry,
} from '@lading/testing';
import { lading, ladingJson, run, tree } from './helpers.js';
import { main } from '../src/index.js';

let work: string;
let cncf: DistributionRegistry;
let registry: Registry;
let host: string;
let one: string;
let two: string;
let three: string;

async function files(dir: string, entries: Record<string, string>): Promise<string> {
  for (const [name, content] of Object.entries(entries)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), content);
  }
  return dir;
}

/** unpack copies a registry image to a layout with skopeo and unpacks it with umoci. */
async function unpack(ref: string, name: string): Promise<Record<string, string>> {
  const layout = join(work, `skopeo-${name}`);
  await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${layout}:x`]);
  const bundle = join(work, `bundle-${name}`);
  await run('umoci', ['unpack', '--rootless', '--image', `${layout}:x`, bundle]);
  return tree(join(bundle, 'rootfs'));
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-cli-verbs-'));
  one = await files(join(work, 'one'), { 'a.txt': 'one a', 'etc/conf': 'x=1' });
  two = await files(join(work, 'two'), { 'b.txt': 'two b', 'etc/conf': 'x=2' });
  three = await files(join(work, 'three'), { 'run.sh': '#!/bin/sh\n' });
  cncf = await startDistributionRegistry();
  registry = createRegistry({ storage: memoryStorage() });
  host = new URL((await registry.listen({ host: '127.0.0.1', port: 0 })).url).host;
});

afterAll(async () => {
  try {
    await cncf.stop();
    await registry.close();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

describe('lading build with several layers and tags', () => {
  it('writes one layer per --layer, in order, under every -t', async () => {
    const a = `${cncf.host}/verbs/multi:a`;
    const b = `${cncf.host}/verbs/multi:b`;
    const other = `${cncf.host}/verbs/other:c`;
    const r = await ladingJson<{ digest: string; destinations: string[] }>(
      'build',
      '--layer',
      one,
      '--layer',
      `${two}:/`,
      '--layer',
      `${three}:/opt/app`,
      '-t',
      a,
      '-t',
      b,
      '-t',
      other,
    );
    const manifest = JSON.parse((await lading('manifest', a)).stdout) as { layers: unknown[] };
    expect(manifest.layers).toHaveLength(3);
    for (const ref of [b, other])
      expect((await lading('digest', ref)).stdout.trim()).toBe(r.digest);
    const root = await unpack(a, 'multi');
    expect(root['a.txt']).toBe(`f:644:${Buffer.from('one a').toString('base64')}`);
    // The later layer wins.
    expect(root['etc/conf']).toBe(`f:644:${Buffer.from('x=2').toString('base64')}`);
    expect(Object.keys(root)).toContain('opt/app/run.sh');
  });

  it('takes --base from an OCI layout, and append adds layers to any image', async () => {
    const layout = join(work, 'base-layout');
    expect((await lading('build', one, `oci:${layout}:base`)).code).toBe(0);
    const built = `${cncf.host}/verbs/on-layout:v1`;
    expect((await lading('build', two, built, '--base', `oci:${layout}:base`)).code).toBe(0);
    const appended = `${cncf.host}/verbs/appended:v1`;
    const r = await lading(
      'append',
      built,
      appended,
      '--layer',
      `${three}:/opt/app`,
      '--env',
      'X=1',
    );
    expect(r.code).toBe(0);
    const m = JSON.parse((await lading('manifest', appended)).stdout) as { layers: unknown[] };
    expect(m.layers).toHaveLength(3);
    const root = await unpack(appended, 'appended');
    expect(root['a.txt']).toBeDefined();
    expect(root['b.txt']).toBeDefined();
    expect(root['opt/app/run.sh']).toBeDefined();
    const cfg = JSON.parse((await lading('config', appended)).stdout) as {
      config: { Env: string[] };
    };
    expect(cfg.config.Env).toContain('X=1');
    // append from a docker archive to a layout works the same way.
    const archive = join(work, 'base.tar');
    expect((await lading('build', one, `docker-archive:${archive}:base:1`)).code).toBe(0);
    const out = join(work, 'appended-layout');
    expect(
      (await lading('append', `docker-archive:${archive}:base:1`, `oci:${out}:v1`, '--layer', two))
        .code,
    ).toBe(0);
    const bundle = join(work, 'bundle-archive-append');
    await run('umoci', ['unpack', '--rootless', '--image', `${out}:v1`, bundle]);
    const t = await tree(join(bundle, 'rootfs'));
    expect(t['a.txt']).toBeDefined();
    expect(t['b.txt']).toBeDefined();
  });

  it('writes docker archives and layouts given together with -t, archive first', async () => {
    const archive = join(work, 'multi.tar');
    const other = join(work, 'multi2.tar');
    const layout = join(work, 'multi-layout');
    const r = await ladingJson<{ digest: string }>(
      'build',
      '--layer',
      one,
      '--layer',
      two,
      '-t',
      `docker-archive:${archive}:multi:1`,
      '-t',
      `oci:${layout}:1`,
    );
    const { stdout } = await run('skopeo', ['inspect', `docker-archive:${archive}`]);
    expect((JSON.parse(stdout) as { Layers: unknown[] }).Layers).toHaveLength(2);
    expect((await lading('digest', `oci:${layout}:1`)).stdout.trim()).toBe(r.digest);
    // Archives alone are each written in full.
    expect(
      (
        await lading(
          'build',
          one,
          '-t',
          `docker-archive:${archive}:a:1`,
          '-t',
          `docker-archive:${other}:b:1`,
        )
      ).code,
    ).toBe(0);
    await run('skopeo', ['inspect', `docker-archive:${other}`]);
    const m = JSON.parse((await lading('manifest', `docker-archive:${other}:b:1`)).stdout) as {
      layers: { digest: string }[];
    };
    const out = join(work, 'from-archive.tgz');
    const digest = m.layers[0]!.digest;
    expect((await lading('blob', `docker-archive:${other}@${digest}`, '-o', out)).code).toBe(0);
    expect(
      `sha256:${createHash('sha256')
        .update(await readFile(out))
        .digest('hex')}`,
    ).toBe(digest);
  });

  it('append does not upload the base layers again within one registry', async () => {
    const proxy = await recordingProxy(`http://${host}`);
    try {
      const base = `${proxy.host}/verbs/base:v1`;
      expect((await lading('build', one, base)).code).toBe(0);
      proxy.clear();
      expect(
        (await lading('append', base, `${proxy.host}/verbs/next:v1`, '--layer', two)).code,
      ).toBe(0);
      // One new layer and one config: two uploads; the base layer is mounted.
      const uploads = proxy.requests.filter(
        (q) => (q.method === 'PATCH' || q.method === 'PUT') && q.path.includes('/blobs/uploads/'),
      );
      expect(uploads.filter((q) => q.bodyBytes > 0).length).toBeLessThanOrEqual(2);
      expect(proxy.requests.some((q) => q.path.includes('mount='))).toBe(true);
    } finally {
      await proxy.close();
    }
  });
});

type Manifest = {
  config: { digest: string; size: number };
  layers: { digest: string; size: number }[];
  annotations?: Record<string, string>;
};

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/**
 * variants reads the only image of an OCI layout and returns it, with
 * `store`, which writes a variant of it under tag NAME: its config with
 * other diff_ids, and other layers if given; every blob under its own
 * digest (an image that contradicts itself, not bytes changed on the way).
 */
async function variants(layout: string) {
  const blobPath = (d: string) => join(layout, 'blobs', 'sha256', d.slice(7));
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string; size: number; annotations?: Record<string, string> }[];
  };
  const top = index.manifests[0]!;
  const manifest = JSON.parse(await readFile(blobPath(top.digest), 'utf8')) as Manifest;
  const config = JSON.parse(await readFile(blobPath(manifest.config.digest), 'utf8')) as {
    rootfs: { diff_ids: string[] };
  };
  const store = async (name: string, diffIds: string[], layers = manifest.layers) => {
    const c = Buffer.from(
      JSON.stringify({ ...config, rootfs: { ...config.rootfs, diff_ids: diffIds } }),
    );
    await writeFile(blobPath(sha256(c)), c);
    const m = Buffer.from(
      JSON.stringify({
        ...manifest,
        config: { ...manifest.config, digest: sha256(c), size: c.length },
        layers,
      }),
    );
    await writeFile(blobPath(sha256(m)), m);
    index.manifests.push({
      ...top,
      digest: sha256(m),
      size: m.length,
      annotations: { 'org.opencontainers.image.ref.name': name },
    });
    await writeFile(join(layout, 'index.json'), JSON.stringify(index));
  };
  return { blobPath, manifest, config, store };
}

async function tarNames(file: string): Promise<string[]> {
  const { stdout } = await run('tar', ['-tf', file]);
  return stdout.split('\n').filter(Boolean).sort();
}

describe('lading everyday verbs', () => {
  it('tag points new tags at a manifest without moving a blob', async () => {
    const proxy = await recordingProxy(cncf.url);
    try {
      const src = `${proxy.host}/verbs/tagged:src`;
      const { digest } = await ladingJson<{ digest: string }>('build', one, src);
      proxy.clear();
      const other = `${proxy.host}/verbs/tagged-elsewhere:x`;
      expect((await lading('tag', src, 'v2', 'v3', other)).code).toBe(0);
      expect(proxy.requests.some((q) => q.method === 'PATCH')).toBe(false);
      expect(
        proxy.requests.some(
          (q) => q.path.includes('/blobs/uploads/') && !q.path.includes('mount='),
        ),
      ).toBe(false);
      for (const ref of ['verbs/tagged:v2', 'verbs/tagged:v3', 'verbs/tagged-elsewhere:x']) {
        const { stdout } = await run('skopeo', [
          'inspect',
          '--tls-verify=false',
          '--raw',
          `docker://${cncf.host}/${ref}`,
        ]);
        expect(sha256(Buffer.from(stdout))).toBe(digest);
      }
    } finally {
      await proxy.close();
    }
  });

  it('delete removes a manifest from the CNCF registry and a tag from a layout', async () => {
    const ref = `${cncf.host}/verbs/doomed:v1`;
    expect((await lading('build', one, ref)).code).toBe(0);
    expect((await lading('delete', ref)).code).toBe(0);
    expect((await lading('manifest', ref)).code).toBe(4);
    await expect(
      run('skopeo', ['inspect', '--tls-verify=false', `docker://${ref}`]),
    ).rejects.toThrow();
    const layout = join(work, 'delete-layout');
    expect((await lading('build', one, `oci:${layout}:a`)).code).toBe(0);
    expect((await lading('build', two, `oci:${layout}:b`)).code).toBe(0);
    expect((await lading('tag', `oci:${layout}:a`, 'a2')).code).toBe(0);
    expect((await lading('digest', `oci:${layout}:a2`)).stdout).toBe(
      (await lading('digest', `oci:${layout}:a`)).stdout,
    );
    expect((await lading('delete', `oci:${layout}:a`)).code).toBe(0);
    expect((await lading('digest', `oci:${layout}:a2`)).code).toBe(0);
    expect((await lading('digest', `oci:${layout}:a`)).code).toBe(4);
    expect((await lading('digest', `oci:${layout}:b`)).code).toBe(0);
  });

  it('blob streams a verified blob to stdout or a file, from a registry or a layout', async () => {
    const ref = `${cncf.host}/verbs/blobs:v1`;
    expect((await lading('build', one, ref)).code).toBe(0);
    const m = JSON.parse((await lading('manifest', ref)).stdout) as Manifest;
    const layer = m.layers[0]!;
    const file = join(work, 'layer.tgz');
    expect(
      (await lading('blob', `${cncf.host}/verbs/blobs@${layer.digest}`, '-o', file)).code,
    ).toBe(0);
    expect(sha256(await readFile(file))).toBe(layer.digest);
    const stdout = new TextSink();
    const code = await main(['blob', `${cncf.host}/verbs/blobs@${m.config.digest}`], { stdout });
    expect(code).toBe(0);
    expect(sha256(Buffer.from(stdout.text))).toBe(m.config.digest);
    // The manifest itself, by its digest: a registry serves it from /manifests/.
    const digest = (await lading('digest', ref)).stdout.trim();
    const manifestFile = join(work, 'manifest.json');
    expect(
      (await lading('blob', `${cncf.host}/verbs/blobs@${digest}`, '-o', manifestFile)).code,
    ).toBe(0);
    expect(sha256(await readFile(manifestFile))).toBe(digest);
    expect(
      (
        await lading(
          'blob',
          `${cncf.host}/verbs/blobs@sha256:${'0'.repeat(64)}`,
          '-o',
          manifestFile,
        )
      ).code,
    ).toBe(4);
    const layout = join(work, 'blob-layout');
    expect((await lading('build', one, `oci:${layout}:v1`)).code).toBe(0);
    const out = join(work, 'layer-from-layout.tgz');
    expect((await lading('blob', `oci:${layout}@${layer.digest}`, '-o', out)).code).toBe(0);
    expect(sha256(await readFile(out))).toBe(layer.digest);
    expect((await lading('blob', `oci:${layout}@sha256:${'0'.repeat(64)}`, '-o', out)).code).toBe(
      4,
    );
  });

  it('mutate edits config and annotations without uploading a layer again', async () => {
    const proxy = await recordingProxy(cncf.url);
    try {
      const src = `${proxy.host}/verbs/mutate-src:v1`;
      const big = join(work, 'mutate-big');
      await mkdir(big);
      await writeFile(join(big, 'noise'), randomBytes(512 * 1024));
      expect((await lading('build', big, src, '--env', 'KEEP=1')).code).toBe(0);
      const before = JSON.parse((await lading('manifest', src)).stdout) as Manifest;
      proxy.clear();
      const dst = `${proxy.host}/verbs/mutated:v1`;
      const r = await lading(
        'mutate',
        src,
        '-t',
        dst,
        '--env',
        'A=1',
        '--label',
        'l=v',
        '--entrypoint',
        '["/bin/app"]',
        '--cmd',
        '["--serve"]',
        '--workdir',
        '/srv',
        '--user',
        '1000',
        '--annotation',
        'org.example=yes',
        '--platform',
        'linux/arm64',
      );
      expect(r.code).toBe(0);
      // Only the new config is uploaded: the layer is mounted from the source repository.
      const layerBytes = before.layers.reduce((n, l) => n + l.size, 0);
      const uploaded = proxy.requests
        .filter((q) => q.path.includes('/blobs/uploads/'))
        .reduce((n, q) => n + q.bodyBytes, 0);
      expect(uploaded).toBeLessThan(layerBytes);
      expect(
        proxy.requests.some(
          (q) => q.path.includes(before.layers[0]!.digest.slice(7)) && q.method === 'PUT',
        ),
      ).toBe(false);
      const { stdout } = await run('skopeo', [
        'inspect',
        '--tls-verify=false',
        '--config',
        `docker://${cncf.host}/verbs/mutated:v1`,
      ]);
      const cfg = JSON.parse(stdout) as {
        architecture: string;
        config: {
          Env: string[];
          Labels: Record<string, string>;
          Entrypoint: string[];
          Cmd: string[];
          WorkingDir: string;
          User: string;
        };
      };
      expect(cfg.architecture).toBe('arm64');
      expect(cfg.config.Env).toEqual(expect.arrayContaining(['KEEP=1', 'A=1']));
      expect(cfg.config.Labels).toEqual({ l: 'v' });
      expect(cfg.config.Entrypoint).toEqual(['/bin/app']);
      expect(cfg.config.Cmd).toEqual(['--serve']);
      expect(cfg.config.WorkingDir).toBe('/srv');
      expect(cfg.config.User).toBe('1000');
      const after = JSON.parse(
        (await lading('manifest', `${cncf.host}/verbs/mutated:v1`)).stdout,
      ) as Manifest;
      expect(after.layers).toEqual(before.layers);
      expect(after.annotations).toMatchObject({ 'org.example': 'yes' });
    } finally {
      await proxy.close();
    }
  });

  it('export writes the flattened filesystem, whiteouts applied, to a file or stdout', async () => {
    const wh = await files(join(work, 'whiteout'), { '.wh.a.txt': '', 'etc/conf': 'x=3' });
    const ref = `${cncf.host}/verbs/export:v1`;
    expect((await lading('build', '--layer', one, '--layer', wh, '-t', ref)).code).toBe(0);
    const file = join(work, 'fs.tar');
    expect((await lading('export', ref, file)).code).toBe(0);
    const names = await tarNames(file);
    expect(names).toContain('etc/conf');
    expect(names).not.toContain('a.txt');
    expect(names.some((n) => n.includes('.wh.'))).toBe(false);
    const x = join(work, 'exported');
    await mkdir(x);
    await run('tar', ['-xf', file, '-C', x]);
    expect(await readFile(join(x, 'etc/conf'), 'utf8')).toBe('x=3');
    const stdout = new TextSink();
    expect(await main(['export', ref, '-'], { stdout })).toBe(0);
    expect(stdout.text.length).toBeGreaterThan(0);
    expect((await stat(file)).size).toBeGreaterThan(0);
    expect((await readdir(work)).some((n) => n.endsWith('.tmp'))).toBe(false);
  });

  it('export checks the config: its digest, a diff_id per layer, each layer against its diff_id', async () => {
    const layout = join(work, 'export-config-layout');
    expect((await lading('build', one, `oci:${layout}:v1`)).code).toBe(0);
    const { blobPath, manifest, config, store: variant } = await variants(layout);
    await variant('zeros', [`sha256:${'0'.repeat(64)}`]);
    await variant('none', []);
    const zeros = await lading('export', `oci:${layout}:zeros`, join(work, 'zeros.tar'));
    expect(zeros.code).toBe(1);
    expect(zeros.stderr).toMatch(/^lading: diffId of layer 1 digest mismatch/);
    expect(zeros.stderr).toContain("hint: the image's config names another diff_id than its layer");
    const none = await lading('export', `oci:${layout}:none`, join(work, 'none.tar'));
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('the config lists 0 diff_ids for 1 layers');
    // a config whose bytes changed under its digest
    await writeFile(blobPath(manifest.config.digest), JSON.stringify({ ...config, os: 'plan9' }));
    const tampered = await lading('export', `oci:${layout}:v1`, join(work, 'tampered.tar'));
    expect(tampered.code).toBe(1);
    expect(tampered.stderr).toMatch(/mismatch/);
    for (const f of ['zeros.tar', 'none.tar', 'tampered.tar'])
      expect(await stat(join(work, f)).catch(() => undefined), f).toBeUndefined();
  });

  it('validate passes a good image and names the corrupted blob', async () => {
    const layout = join(work, 'validate-layout');
    expect(
      (await lading('build', '--layer', one, '--layer', two, '-t', `oci:${layout}:v1`)).code,
    ).toBe(0);
    expect((await lading('validate', `oci:${layout}:v1`)).code).toBe(0);
    const ref = `${cncf.host}/verbs/valid:v1`;
    expect((await lading('cp', `oci:${layout}:v1`, ref)).code).toBe(0);
    const ok = await ladingJson<{ valid: boolean; blobs: number }>('validate', ref);
    expect(ok).toMatchObject({ valid: true, blobs: 3 });
    const m = JSON.parse((await lading('manifest', `oci:${layout}:v1`)).stdout) as Manifest;
    const victim = m.layers[1]!;
    const path = join(layout, 'blobs', 'sha256', victim.digest.slice(7));
    const bytes = await readFile(path);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10]! + 1) % 256;
    await writeFile(path, bytes);
    const bad = await lading('validate', `oci:${layout}:v1`);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('layers[1]');
    expect(bad.stderr).toContain(victim.digest);
    // Two bad blobs: --json lists both on stdout.
    const other = m.layers[0]!;
    const otherPath = join(layout, 'blobs', 'sha256', other.digest.slice(7));
    await writeFile(otherPath, Buffer.concat([await readFile(otherPath), Buffer.from('x')]));
    const both = await lading('validate', `oci:${layout}:v1`, '--json');
    expect(both.code).toBe(1);
    const report = JSON.parse(both.stdout) as { valid: boolean; problems: { digest: string }[] };
    expect(report.valid).toBe(false);
    expect(report.problems.map((p) => p.digest).sort()).toEqual(
      [other.digest, victim.digest].sort(),
    );
    expect(JSON.parse(both.stderr)).toMatchObject({ code: 'INVALID_MANIFEST' });
  });

  it('validate decompresses each layer against its diff_id; --fast checks digests only', async () => {
    const layout = join(work, 'validate-diffid-layout');
    expect(
      (await lading('build', '--layer', one, '--layer', two, '-t', `oci:${layout}:v1`)).code,
    ).toBe(0);
    const { blobPath, manifest, config, store } = await variants(layout);
    const good = await ladingJson<{ valid: boolean; blobs: number; diffIds: number }>(
      'validate',
      `oci:${layout}:v1`,
    );
    expect(good).toMatchObject({ valid: true, blobs: 3, diffIds: 2 });
    // Only decompressing finds these.
    const [first, second] = config.rootfs.diff_ids as [string, string];
    await store('swapped', [second, first]);
    const swapped = await lading('validate', `oci:${layout}:swapped`, '--json');
    expect(swapped.code).toBe(1);
    const report = JSON.parse(swapped.stdout) as { problems: { path: string; error: string }[] };
    expect(report.problems.map((p) => p.path)).toEqual(['$.layers[0]', '$.layers[1]']);
    expect(report.problems[0]!.error).toBe(
      `diff_id digest mismatch: expected ${second}, got ${first}`,
    );
    expect((await lading('validate', '--fast', `oci:${layout}:swapped`)).code).toBe(0);
    // A gzip layer with bytes after its last member, under its own digest.
    const layer = manifest.layers[1]!;
    const trailing = Buffer.concat([await readFile(blobPath(layer.digest)), Buffer.from('junk')]);
    await writeFile(blobPath(sha256(trailing)), trailing);
    await store('trailing', config.rootfs.diff_ids, [
      manifest.layers[0]!,
      { ...layer, digest: sha256(trailing), size: trailing.length },
    ]);
    const bad = await lading('validate', `oci:${layout}:trailing`);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(
      /^lading: 1 bad descriptor\(s\); \$\.layers\[1\] sha256:\w+: the layer does not decompress/,
    );
    expect((await lading('validate', '--fast', `oci:${layout}:trailing`)).code).toBe(0);
    // A blob damaged in storage is a digest mismatch, not a layer that
    // does not decompress (it fails to decompress before its digest is known).
    const victim = blobPath(manifest.layers[0]!.digest);
    const damaged = await readFile(victim);
    damaged[Math.floor(damaged.length / 2)]! ^= 0xff;
    await writeFile(victim, damaged);
    const broken = await lading('validate', `oci:${layout}:v1`, '--json');
    expect(broken.code).toBe(1);
    const found = JSON.parse(broken.stdout) as { problems: { path: string; error: string }[] };
    expect(found.problems[0]).toMatchObject({ path: '$.layers[0]' });
    expect(found.problems[0]!.error).toMatch(/digest mismatch/);
  });
});

describe('lading index, attach and discover', () => {
  it('builds a two-platform index that pulls per platform, and appends to it', async () => {
    const amd = `${cncf.host}/verbs/plat:amd64`;
    const arm = `${cncf.host}/verbs/plat:arm64`;
    expect((await lading('build', one, amd, '--platform', 'linux/amd64')).code).toBe(0);
    const layout = join(work, 'arm-layout');
    expect(
      (await lading('build', two, `oci:${layout}:arm`, '--platform', 'linux/arm64')).code,
    ).toBe(0);
    expect((await lading('cp', `oci:${layout}:arm`, arm)).code).toBe(0);
    const idx = `${cncf.host}/verbs/multiarch:v1`;
    expect((await lading('index', 'create', idx, amd, `oci:${layout}:arm`)).code).toBe(0);
    const m = JSON.parse((await lading('manifest', idx)).stdout) as {
      mediaType: string;
      manifests: { platform: { architecture: string } }[];
    };
    expect(m.manifests.map((d) => d.platform.architecture)).toEqual(['amd64', 'arm64']);
    const valid = await ladingJson<{ manifests: number; blobs: number }>('validate', idx);
    expect(valid).toMatchObject({ manifests: 3, blobs: 4 });
    for (const [arch, dir] of [
      ['amd64', one],
      ['arm64', two],
    ] as const) {
      const layoutOut = join(work, `pulled-${arch}`);
      await run('skopeo', [
        'copy',
        '--src-tls-verify=false',
        '--override-arch',
        arch,
        `docker://${idx}`,
        `oci:${layoutOut}:x`,
      ]);
      const bundle = join(work, `bundle-pulled-${arch}`);
      await run('umoci', ['unpack', '--rootless', '--image', `${layoutOut}:x`, bundle]);
      expect(await tree(join(bundle, 'rootfs'))).toEqual(await tree(dir));
      const dest = join(work, `lading-pulled-${arch}`);
      expect((await lading('pull', idx, dest, '--platform', `linux/${arch}`)).code).toBe(0);
      expect(await tree(dest)).toEqual(await tree(dir));
    }
    // mutate edits every image of an index; the annotation goes on the index.
    const mutated = `${cncf.host}/verbs/multiarch:mutated`;
    expect(
      (await lading('mutate', idx, '-t', mutated, '--env', 'M=1', '--annotation', 'a=b')).code,
    ).toBe(0);
    const mm = JSON.parse((await lading('manifest', mutated)).stdout) as typeof m & {
      annotations: Record<string, string>;
    };
    expect(mm.annotations).toMatchObject({ a: 'b' });
    expect(mm.manifests.map((d) => d.platform.architecture)).toEqual(['amd64', 'arm64']);
    const armCfg = JSON.parse(
      (await lading('config', mutated, '--platform', 'linux/arm64')).stdout,
    ) as { config: { Env: string[] } };
    expect(armCfg.config.Env).toContain('M=1');
    const s390 = `${cncf.host}/verbs/plat:s390x`;
    expect((await lading('build', three, s390, '--platform', 'linux/s390x')).code).toBe(0);
    expect((await lading('index', 'append', idx, s390)).code).toBe(0);
    const after = JSON.parse((await lading('manifest', idx)).stdout) as typeof m;
    expect(after.manifests.map((d) => d.platform.architecture)).toEqual([
      'amd64',
      'arm64',
      's390x',
    ]);
    // The same image again is listed once; another image for a platform the
    // index has is refused, naming both, and the index stays as it was.
    expect((await lading('index', 'append', idx, s390)).code).toBe(0);
    expect((JSON.parse((await lading('manifest', idx)).stdout) as typeof m).manifests).toHaveLength(
      3,
    );
    const otherAmd = `${cncf.host}/verbs/plat:amd64-other`;
    expect((await lading('build', three, otherAmd, '--platform', 'linux/amd64')).code).toBe(0);
    const before = await lading('digest', idx);
    for (const argv of [
      ['index', 'append', idx, otherAmd],
      ['index', 'create', `${cncf.host}/verbs/multiarch:dup`, amd, otherAmd],
    ]) {
      const dup = await lading(...argv);
      expect(dup.code, argv.join(' ')).toBe(2);
      expect(dup.stderr).toMatch(
        /^lading: two images for linux\/amd64: sha256:\S+ \(.+\) and sha256:/,
      );
      expect(dup.stderr).toContain(`(${otherAmd})`);
    }
    expect((await lading('digest', idx)).stdout).toBe(before.stdout);
    expect((await lading('digest', `${cncf.host}/verbs/multiarch:dup`)).code).toBe(4);
  });

  it('attaches an artifact and discovers it on both registries and in a layout', async () => {
    const sbom = join(work, 'sbom.json');
    await writeFile(sbom, '{"sbom":true}');
    const sig = join(work, 'sig.txt');
    await writeFile(sig, 'signature');
    for (const subject of [
      `${cncf.host}/verbs/subject:v1`,
      `${host}/verbs/subject:v1`,
      `oci:${join(work, 'subject-layout')}:v1`,
    ]) {
      expect((await lading('build', one, subject)).code).toBe(0);
      const a = await ladingJson<{ digest: string; referrersApi: boolean }>(
        'attach',
        subject,
        '--artifact-type',
        'application/spdx+json',
        sbom,
      );
      // The CNCF registry 2.8 has no referrers API: the tag schema is used there.
      expect(a.referrersApi).toBe(subject.startsWith(host));
      const b = await ladingJson<{ digest: string }>(
        'attach',
        subject,
        '--artifact-type',
        'application/vnd.example.sig',
        sig,
      );
      const all = await ladingJson<{ referrers: { digest: string; artifactType: string }[] }>(
        'discover',
        subject,
      );
      expect(all.referrers.map((r) => r.digest).sort()).toEqual([a.digest, b.digest].sort());
      const only = await ladingJson<{ referrers: { digest: string }[] }>(
        'discover',
        subject,
        '--artifact-type',
        'application/vnd.example.sig',
      );
      expect(only.referrers.map((r) => r.digest)).toEqual([b.digest]);
      const art = JSON.parse(
        (await lading('manifest', subject.replace(/:v1$/, `@${a.digest}`))).stdout,
      ) as {
        artifactType: string;
        config: { mediaType: string };
        subject: { digest: string };
        layers: { annotations: Record<string, string> }[];
      };
      expect(art.config.mediaType).toBe('application/vnd.oci.empty.v1+json');
      expect(art.artifactType).toBe('application/spdx+json');
      expect(art.subject.digest).toBe((await lading('digest', subject)).stdout.trim());
      expect(art.layers[0]!.annotations['org.opencontainers.image.title']).toBe('sbom.json');
      // A type that is not type/subtype is refused before anything is pushed.
      const badType = await lading('attach', subject, '--artifact-type', 'bad type', sbom);
      expect(badType.code).toBe(2);
      expect(badType.stderr).toContain('is not a media type');
      // A docker archive holds images only.
      const archived = await lading(
        'attach',
        `docker-archive:${join(work, 'x.tar')}:a:1`,
        '--artifact-type',
        'application/spdx+json',
        sbom,
      );
      expect(archived.code).toBe(2);
      expect(archived.stderr).toContain('cannot hold artifacts');
      // An artifact's config is printed as stored: the empty descriptor's {}.
      const config = await lading('config', subject.replace(/:v1$/, `@${a.digest}`), '--json');
      expect(config.code, config.stderr).toBe(0);
      expect(JSON.parse(config.stdout)).toEqual({});
      // A deleted referrer is no longer discovered (the tag schema index
      // is rewritten without it where there is no referrers API).
      const gone = await lading('delete', subject.replace(/:v1$/, `@${a.digest}`));
      expect(gone.code, gone.stderr).toBe(0);
      const left = await ladingJson<{ referrers: { digest: string }[] }>('discover', subject);
      expect(left.referrers.map((r) => r.digest)).toEqual([b.digest]);
    }
  });

  it('cp -r copies the referrers, and theirs, between registries and layouts', async () => {
    const sig = join(work, 'r-sig.txt');
    await writeFile(sig, 'signature');
    const sbom = join(work, 'r-sbom.json');
    await writeFile(sbom, '{"sbom":1}');
    const src = `${cncf.host}/verbs/rsrc:v1`;
    expect((await lading('build', one, src)).code).toBe(0);
    const s = await ladingJson<{ digest: string }>(
      'attach',
      src,
      '--artifact-type',
      'application/vnd.example.sig',
      sig,
    );
    // an SBOM of the signature: a referrer of a referrer
    const b = await ladingJson<{ digest: string }>(
      'attach',
      `${cncf.host}/verbs/rsrc@${s.digest}`,
      '--artifact-type',
      'application/spdx+json',
      sbom,
    );
    const referrers = async (loc: string) =>
      (await ladingJson<{ referrers: { digest: string }[] }>('discover', loc)).referrers.map(
        (r) => r.digest,
      );
    const layout = join(work, 'r-layout');
    const hops = [
      [src, `${host}/verbs/rdst:v1`, `${host}/verbs/rdst@${s.digest}`],
      [`${host}/verbs/rdst:v1`, `oci:${layout}:v1`, `oci:${layout}@${s.digest}`],
      [`oci:${layout}:v1`, `${cncf.host}/verbs/rback:v1`, `${cncf.host}/verbs/rback@${s.digest}`],
    ] as const;
    for (const [from, to, sigAt] of hops) {
      const r = await ladingJson<{ referrers: number }>('cp', '-r', from, to);
      expect(r.referrers, `${from} → ${to}`).toBe(2);
      expect(await referrers(to), to).toEqual([s.digest]);
      expect(await referrers(sigAt), sigAt).toEqual([b.digest]);
    }
    // Without -r, none; the layout read without a tag is still its one
    // image (its referrers indexes are not images).
    const plain = `${cncf.host}/verbs/rplain:v1`;
    const tagless = await lading('cp', `oci:${layout}`, plain);
    expect(tagless.code, tagless.stderr).toBe(0);
    expect(await referrers(plain)).toEqual([]);
    const archive = await lading('cp', '-r', src, `docker-archive:${join(work, 'r.tar')}:a:1`);
    expect(archive.code).toBe(2);
    expect(archive.stderr).toContain('cannot hold referrers');
    const unpack = await lading('pull', '-r', src, join(work, 'r-dir'));
    expect(unpack.code).toBe(2);
    expect(unpack.stderr).toContain('pull into oci:DIR to keep them');
    // A referrer the tag schema index still lists but the registry lost
    // (deleted behind the index's back) is named as such.
    const del = await fetch(`http://${cncf.host}/v2/verbs/rsrc/manifests/${b.digest}`, {
      method: 'DELETE',
    });
    expect(del.status).toBe(202);
    const stale = await lading('cp', '-r', src, `oci:${join(work, 'r-stale')}:v1`);
    expect(stale.code).toBe(4);
    expect(stale.stderr).toContain(`${b.digest}, listed as a referrer of ${s.digest}, is missing`);
  });
});
