import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import {
  recordingProxy,
  startDistributionRegistry,
  type DistributionRegistry,
} from '@lading/testing';
import { lading, ladingJson, run, tree } from './helpers.js';

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
  await cncf.stop();
  await registry.close();
  await rm(work, { recursive: true, force: true });
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
