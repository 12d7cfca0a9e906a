import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendLayers,
  emptyImage,
  imageIndex,
  layerFromBytes,
  withConfig,
  withPlatform,
  type Platform,
} from '@lading/core';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { singleFileTar } from '@lading/testing';
import { write, writeIndex } from '@lading/remote';
import { bin, lading, ladingJson, ladingProcess, run } from './helpers.js';

let work: string;
let app: string;
let registry: Registry;
let host: string;

function platformImage(platform: Platform, label: string) {
  const layer = layerFromBytes(singleFileTar('arch', Buffer.from(label)));
  return withPlatform(appendLayers(emptyImage(), layer), platform);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-locations-'));
  app = join(work, 'app');
  await mkdir(app);
  await writeFile(join(app, 'run'), 'echo run\n');
  registry = createRegistry({ storage: memoryStorage() });
  host = new URL((await registry.listen({ host: '127.0.0.1', port: 0 })).url).host;
  const amd = { os: 'linux', architecture: 'amd64' };
  // arm64 without a variant: the spec reads it as arm64/v8.
  const arm = { os: 'linux', architecture: 'arm64' };
  await writeIndex(
    `${host}/loc/multi:1`,
    imageIndex([
      { image: platformImage(amd, 'amd64'), platform: amd },
      { image: platformImage(arm, 'arm64'), platform: arm },
    ]),
  ).done;
  await writeIndex(
    `${host}/loc/amd-only:1`,
    imageIndex([{ image: platformImage(amd, 'amd64'), platform: amd }]),
  ).done;
});

afterAll(async () => {
  try {
    await registry.close();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

describe('--platform is matched the same way by every command', () => {
  it('finds arm64 for linux/arm64/v8 in manifest, config, digest, cp, pull and build --base', async () => {
    const ref = `${host}/loc/multi:1`;
    const digest = await lading('digest', ref, '--platform', 'linux/arm64/v8');
    expect(digest.code, digest.stderr).toBe(0);
    const child = digest.stdout.trim();
    expect(child).toMatch(/^sha256:/);
    const manifest = await lading('manifest', ref, '--platform', 'linux/arm64/v8', '--json');
    expect(manifest.code, manifest.stderr).toBe(0);
    const config = await lading('config', ref, '--platform', 'linux/arm64', '--json');
    expect(config.code, config.stderr).toBe(0);
    expect((JSON.parse(config.stdout) as { architecture: string }).architecture).toBe('arm64');
    const cp = await lading(
      'cp',
      ref,
      `oci:${join(work, 'cp')}:a`,
      '--platform',
      'linux/arm64/v8',
      '-q',
    );
    expect(cp.code, cp.stderr).toBe(0);
    expect(cp.stdout.trim()).toBe(child);
    const rootfs = join(work, 'pulled');
    const pull = await lading('pull', ref, rootfs, '--platform', 'linux/arm64/v8');
    expect(pull.code, pull.stderr).toBe(0);
    expect(await readFile(join(rootfs, 'arch'), 'utf8')).toBe('arm64');
    const build = await lading(
      'build',
      app,
      `oci:${join(work, 'built')}:v1`,
      '--base',
      ref,
      '--platform',
      'linux/arm64/v8',
    );
    expect(build.code, build.stderr).toBe(0);
  });

  it('fails every command with exit 4 and one message naming what the index offers', async () => {
    const ref = `${host}/loc/multi:1`;
    const attempts = [
      ['digest', ref],
      ['manifest', ref],
      ['config', ref],
      ['cp', ref, `oci:${join(work, 'none')}:x`],
      ['pull', ref, join(work, 'none-rootfs')],
      ['build', app, `oci:${join(work, 'none-built')}:x`, '--base', ref],
    ];
    const errors = new Set<string>();
    for (const argv of attempts) {
      const r = await lading(...argv, '--platform', 'linux/s390x');
      expect(r.code, `${argv[0] ?? ''}: ${r.stderr}`).toBe(4);
      expect(r.stderr).toContain('hint: pass one of the platforms offered to --platform');
      errors.add((r.stderr.split('\n')[0] ?? '').replace(/sha256:[0-9a-f]{64}/, 'DIGEST'));
    }
    expect([...errors]).toEqual([
      'lading: no image for platform linux/s390x in the index DIGEST (it offers linux/amd64, linux/arm64)',
    ]);
  });

  it('does not print the amd64 image of an amd64-only index for linux/arm64', async () => {
    for (const cmd of ['manifest', 'config', 'digest']) {
      const r = await lading(cmd, `${host}/loc/amd-only:1`, '--platform', 'linux/arm64');
      expect(r.code).toBe(4);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain('(it offers linux/amd64)');
    }
  });
});

describe('local locations', () => {
  it('reads oci:DIR and docker-archive:FILE without a tag when they hold one image', async () => {
    const layout = join(work, 'one-layout');
    const built = await lading('build', app, `oci:${layout}:v1`, '-q');
    expect(built.code, built.stderr).toBe(0);
    const digest = built.stdout.trim();
    expect((await lading('digest', `oci:${layout}`)).stdout.trim()).toBe(digest);
    const archive = join(work, 'one.tar');
    expect(
      (await lading('cp', `oci:${layout}`, `docker-archive:${archive}:team/app:v1`)).code,
    ).toBe(0);
    const fromArchive = await lading('digest', `docker-archive:${archive}`);
    expect(fromArchive.code, fromArchive.stderr).toBe(0);
    const tagged = await lading('digest', `docker-archive:${archive}:team/app:v1`);
    expect(fromArchive.stdout.trim()).toBe(tagged.stdout.trim());
    const config = await lading('config', `docker-archive:${archive}`, '--json');
    expect(config.code, config.stderr).toBe(0);
  });

  it('copies an index again when the destination lost one of its children', async () => {
    expect((await lading('cp', `${host}/loc/multi:1`, `${host}/rp/app:multi`)).code).toBe(0);
    const index = JSON.parse((await lading('manifest', `${host}/rp/app:multi`)).stdout) as {
      manifests: { digest: string }[];
    };
    const child = index.manifests[1]!.digest;
    expect((await lading('delete', `${host}/rp/app@${child}`)).code).toBe(0);
    expect((await lading('digest', `${host}/rp/app@${child}`)).code).toBe(4);
    // The index is still there, so the copy is skipped, but tagging it is
    // refused (a child is missing): the copy goes through the index again.
    const again = await lading('cp', `${host}/loc/multi:1`, `${host}/rp/app:multi2`);
    expect(again.code, again.stderr).toBe(0);
    expect((await lading('digest', `${host}/rp/app@${child}`)).code).toBe(0);
    expect((await lading('digest', `${host}/rp/app:multi2`)).stdout.trim()).toBe(
      (await lading('digest', `${host}/loc/multi:1`)).stdout.trim(),
    );
  });

  it('ls lists the tags of a layout and the names in a docker archive', async () => {
    const layout = join(work, 'ls-layout');
    const archive = join(work, 'ls.tar');
    expect(
      (await lading('build', app, '-t', `oci:${layout}:a`, '-t', `oci:${layout}:b`)).code,
    ).toBe(0);
    expect((await lading('build', app, `docker-archive:${archive}:team/app:v1`)).code).toBe(0);
    expect((await lading('ls', `oci:${layout}`)).stdout.trim().split('\n').sort()).toEqual([
      'a',
      'b',
    ]);
    expect((await lading('ls', `docker-archive:${archive}`)).stdout.trim()).toBe('team/app:v1');
    expect((await lading('ls', `oci:${layout}:a`)).code).toBe(2);
  });

  it('refuses a layout tag or an archive name that other tools would not read, with exit 2', async () => {
    for (const dst of [
      `oci:${join(work, 'badtag')}:bad*tag`,
      `docker-archive:${join(work, 'bad.tar')}:UPPER/x:v1`,
      `docker-archive:${join(work, 'bad.tar')}:Bad Name`,
    ]) {
      const r = await lading('build', app, dst);
      expect(r.code, dst).toBe(2);
      expect(r.stderr).toMatch(/^lading: (oci: tag|docker-archive: name) "/);
    }
    expect(existsSync(join(work, 'badtag'))).toBe(false);
    expect(existsSync(join(work, 'bad.tar'))).toBe(false);
  });

  it('refuses a malformed @digest in a location with exit 2, and a missing one is local', async () => {
    const layout = join(work, 'digest-layout');
    expect((await lading('build', app, `oci:${layout}:v1`)).code).toBe(0);
    for (const [where, why] of [
      [`oci:${layout}@sha256:00`, 'sha256 needs 64 hex characters, got 2'],
      [`oci:${layout}@md5:${'0'.repeat(32)}`, 'unsupported algorithm "md5"'],
      [`docker-archive:${join(work, 'none.tar')}@sha256:${'A'.repeat(64)}`, 'lowercase'],
    ] as const) {
      const r = await lading('digest', where);
      expect(r.code, where).toBe(2);
      expect(r.stderr).toMatch(/^lading: (oci|docker-archive): invalid digest "/);
      expect(r.stderr).toContain(why);
    }
    const absent = await lading('digest', `oci:${layout}@sha256:${'0'.repeat(64)}`);
    expect(absent.code).toBe(4);
    expect(absent.stderr).toContain('not found in the OCI layout');
    expect(absent.stderr).toContain('hint: check the path');
    expect(absent.stderr).not.toContain('lading ls REPO');
  });

  it('removes a layout a failed copy created, and keeps one that was there', async () => {
    const src = join(work, 'tampered-src');
    expect((await lading('build', app, `oci:${src}:v1`)).code).toBe(0);
    const m = JSON.parse((await lading('manifest', `oci:${src}:v1`)).stdout) as {
      layers: { digest: string }[];
    };
    const blob = join(src, 'blobs', 'sha256', m.layers[0]!.digest.slice('sha256:'.length));
    const bytes = await readFile(blob);
    const at = bytes.length - 20;
    bytes.writeUInt8((bytes.readUInt8(at) ^ 0xff) & 0xff, at);
    await writeFile(blob, bytes);
    const fresh = join(work, 'never-made');
    const r = await lading('cp', `oci:${src}:v1`, `oci:${fresh}:v1`);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(existsSync(fresh)).toBe(false);
    const kept = join(work, 'kept-layout');
    const other = join(work, 'other-app');
    await mkdir(other);
    await writeFile(join(other, 'other'), 'another image\n');
    expect((await lading('build', other, `oci:${kept}:old`)).code).toBe(0);
    expect((await lading('cp', `oci:${src}:v1`, `oci:${kept}:v1`)).code).toBe(1);
    expect((await lading('digest', `oci:${kept}:old`)).code).toBe(0);
    expect((await lading('digest', `oci:${kept}:v1`)).code).toBe(4);
  });

  it('prints the digest a docker archive stores (its layers are uncompressed)', async () => {
    const archive = join(work, 'stored.tar');
    const layout = join(work, 'stored-layout');
    const built = await ladingJson<{ digest: string; digests: Record<string, string> }>(
      'build',
      app,
      '-t',
      `oci:${layout}:v1`,
      '-t',
      `docker-archive:${archive}:team/app:v1`,
      '--json',
    );
    const inLayout = (await lading('digest', `oci:${layout}:v1`)).stdout.trim();
    const inArchive = (
      await lading('digest', `docker-archive:${archive}:team/app:v1`)
    ).stdout.trim();
    expect(inArchive).not.toBe(inLayout);
    expect(built.digest).toBe(inLayout);
    expect(built.digests).toEqual({
      [`oci:${layout}:v1`]: inLayout,
      [`docker-archive:${archive}:team/app:v1`]: inArchive,
    });
    const alone = await lading('build', app, `docker-archive:${archive}:team/app:v2`, '-q');
    expect(alone.stdout.trim()).toBe(
      (await lading('digest', `docker-archive:${archive}:team/app:v2`)).stdout.trim(),
    );
    const copied = await lading('cp', `oci:${layout}:v1`, `docker-archive:${archive}:x:1`, '-q');
    expect(copied.stdout.trim()).toBe(inArchive);
  });

  it('leaves nothing in the temp dir when a copy to a docker archive fails', async () => {
    const layout = join(work, 'damaged-layout');
    const built = await lading('build', app, `oci:${layout}:v1`, '-q');
    expect(built.code, built.stderr).toBe(0);
    const blob = (digest: string) => join(layout, 'blobs', 'sha256', digest.slice(7));
    const manifest = JSON.parse(await readFile(blob(built.stdout.trim()), 'utf8')) as {
      layers: { digest: string }[];
    };
    // The layer blob damaged near its end (same size): the archive
    // writer has spooled most of it when the copy fails.
    const layerPath = blob(manifest.layers[0]?.digest ?? '');
    const bytes = await readFile(layerPath);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0xff;
    await writeFile(layerPath, bytes);
    const tmp = join(work, 'archive-tmp');
    await mkdir(tmp);
    const archive = join(work, 'damaged.tar');
    const r = await run(
      process.execPath,
      [bin, 'cp', `oci:${layout}:v1`, `docker-archive:${archive}:team/app:v1`],
      { env: { ...process.env, TMPDIR: tmp } },
    ).then(
      () => ({ code: 0, stderr: '' }),
      (e: unknown) => e as { code: number; stderr: string },
    );
    // (Whichever notices first: the digest, or gunzip on the damaged stream.)
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^lading: .*(digest mismatch|does not decompress)/m);
    expect(await readdir(tmp)).toEqual([]);
    expect(existsSync(archive)).toBe(false);
  });

  it('build leaves out of the layer the layout and archive it writes inside DIR', async () => {
    const src = join(work, 'self-src');
    await mkdir(join(src, 'sub'), { recursive: true });
    await mkdir(join(src, 'out', 'deep'), { recursive: true });
    // big enough that the layout's blob is being written while the tree is walked
    await writeFile(join(src, 'sub', 'data'), Buffer.alloc(8 << 20, 'incompressible? no'));
    await writeFile(join(src, 'z-last'), 'after the outputs in byte order\n');
    const clean = await lading('build', src, `oci:${join(work, 'self-clean')}:v1`);
    expect(clean.code, clean.stderr).toBe(0);
    const want = (await lading('digest', `oci:${join(work, 'self-clean')}:v1`)).stdout.trim();
    const layout = join(src, 'out', 'deep', 'lay');
    // twice: the second time the layout (with its blobs) and the archive are there
    for (const tag of ['v1', 'v2']) {
      const inside = await lading(
        'build',
        src,
        '-t',
        `oci:${layout}:${tag}`,
        '-t',
        `docker-archive:${join(src, 'sub', 'img.tar')}:self/app:${tag}`,
      );
      expect(inside.code, inside.stderr).toBe(0);
      expect((await lading('digest', `oci:${layout}:${tag}`)).stdout.trim(), tag).toBe(want);
    }
    expect((await readdir(join(src, 'sub'))).sort()).toEqual(['data', 'img.tar']);
    // the layout at DIR itself is refused, and nothing is written there
    const into = await lading('build', src, `oci:${src}:v1`);
    expect(into.code).toBe(2);
    expect(into.stderr).toContain('the directory being built');
    expect(existsSync(join(src, 'index.json'))).toBe(false);
  });

  it('build writes no local path into the history and no null into the config', async () => {
    const layout = join(work, 'history-layout');
    expect((await lading('build', app, `oci:${layout}:v1`, '--entrypoint', '["/run"]')).code).toBe(
      0,
    );
    const config = await lading('config', `oci:${layout}`, '--json');
    expect(config.code, config.stderr).toBe(0);
    expect(config.stdout).not.toContain(work);
    expect(config.stdout).not.toContain('null');
  });

  it('lists the names when a tagless layout or archive holds several images', async () => {
    const layout = join(work, 'two-layout');
    await lading('build', app, `oci:${layout}:v1`);
    await lading('build', app, `oci:${layout}:v2`, '--env', 'A=1');
    const r = await lading('digest', `oci:${layout}`);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe(
      `lading: the OCI layout ${layout} holds 2 images; name one: v1; v2`,
    );
    expect(r.stderr.split('\n')[1]).toMatch(/^hint: name one image in the location: oci:DIR:TAG/);
    expect(r.stderr).not.toContain('lading ls');
    // One image under two names is one image; a third name groups with its image.
    const one = join(work, 'one-image-two-tags');
    const built = await lading('build', app, `oci:${one}:a`, '-t', `oci:${one}:b`, '-q');
    expect(built.code, built.stderr).toBe(0);
    const d = await lading('digest', `oci:${one}`);
    expect(d.stderr).toBe('');
    expect(d.stdout.trim()).toBe(built.stdout.trim().split('\n').pop());
    expect((await lading('tag', `oci:${layout}:v1`, 'v1b')).code).toBe(0);
    expect((await lading('digest', `oci:${layout}`)).stderr.split('\n')[0]).toBe(
      `lading: the OCI layout ${layout} holds 2 images; name one: v1, v1b; v2`,
    );
  });

  it('says what is missing, with a local hint, for a missing layout or archive', async () => {
    const missingDir = await lading('manifest', `oci:${join(work, 'nowhere')}`);
    expect(missingDir.code).toBe(4);
    expect(missingDir.stderr).toContain(`no OCI layout at ${join(work, 'nowhere')}`);
    const missingFile = await lading('digest', `docker-archive:${join(work, 'nothing.tar')}:a:b`);
    expect(missingFile.code).toBe(4);
    expect(missingFile.stderr).toContain(`no such file: ${join(work, 'nothing.tar')}`);
    for (const r of [missingDir, missingFile]) {
      expect(r.stderr.trim().split('\n')).toHaveLength(2);
      expect(r.stderr).toContain('hint: check the path');
      expect(r.stderr).not.toContain('lading ls');
    }
  });

  it('pull into an existing file fails with one typed line, not a raw errno', async () => {
    const file = join(work, 'afile');
    await writeFile(file, 'x');
    const r = await lading('pull', `${host}/loc/multi:1`, file);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')[0]).toBe(
      `lading: cannot unpack into ${file}: it exists and is not a directory`,
    );
    expect(r.stderr).not.toMatch(/EEXIST|mkdir '/);
  });

  it('pull refuses a DEST that reads as a registry reference, and creates nothing', async () => {
    const r = await lading('pull', `${host}/loc/amd-only:1`, `${host}/loc/pulled:1`);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('looks like a registry reference');
    expect(existsSync(host)).toBe(false);
  });

  it('fails cp and pull with one typed line when the destination is under /proc', async () => {
    // A child process: before the fix, Node's recursive mkdir spun forever
    // on /proc/x and held a thread-pool thread that no abort could free.
    const ref = `${host}/loc/amd-only:1`;
    const cp = await ladingProcess('cp', ref, 'oci:/proc/lading-x/layout');
    expect(cp.code, cp.stderr).toBe(4);
    expect(cp.stderr.split('\n')[0]).toBe(
      'lading: cannot write the OCI layout: /proc/lading-x: no such file or directory',
    );
    const pull = await ladingProcess('pull', ref, '/proc/lading-x/rootfs');
    expect(pull.code, pull.stderr).toBe(1);
    expect(pull.stderr.trim().split('\n').slice(1)).toEqual([expect.stringMatching(/^hint: /)]);
    expect(pull.stderr.split('\n')[0]).toMatch(/^lading: .*\/proc\/lading-x.*no such file/);
  });

  it('pulls a layer that ends right after its last entry (as umoci 0.4.7 writes) completely', async () => {
    const full = singleFileTar('etc/motd', Buffer.from('x'.repeat(1000)));
    // header + 1000 bytes of data: no padding, no end-of-archive blocks
    const cut = full.subarray(0, 512 + 1000);
    const image = withConfig(appendLayers(emptyImage(), layerFromBytes(cut)), { cmd: ['/bin/sh'] });
    await write(`${host}/loc/umoci-style:1`, image).done;
    const rootfs = join(work, 'umoci-style');
    const r = await lading('pull', `${host}/loc/umoci-style:1`, rootfs);
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(join(rootfs, 'etc/motd'), 'utf8')).toBe('x'.repeat(1000));
  });
});

describe('layers written by umoci 0.4.7', () => {
  it('lading pull unpacks them completely (they end right after the last entry)', async () => {
    const dir = join(work, 'umoci');
    const layout = join(dir, 'layout');
    await mkdir(join(dir, 'src'), { recursive: true });
    const data = Buffer.alloc(1000, 'u');
    await writeFile(join(dir, 'src', 'f'), data);
    await run('umoci', ['init', '--layout', layout]);
    await run('umoci', ['new', '--image', `${layout}:t`]);
    await run('umoci', [
      'insert',
      '--rootless',
      '--image',
      `${layout}:t`,
      join(dir, 'src', 'f'),
      '/f',
    ]);
    const cp = await lading('cp', `oci:${layout}:t`, `${host}/loc/umoci:t`);
    expect(cp.code, cp.stderr).toBe(0);
    const rootfs = join(dir, 'rootfs');
    const pull = await lading('pull', `${host}/loc/umoci:t`, rootfs);
    expect(pull.code, pull.stderr).toBe(0);
    expect((await readFile(join(rootfs, 'f'))).equals(data)).toBe(true);
  });
});

describe('docker-archive to OCI layout', () => {
  it('writes OCI media types that umoci, skopeo and oci-image-tool read', async () => {
    const layout = join(work, 'src-layout');
    expect((await lading('build', app, `oci:${layout}:v1`)).code).toBe(0);
    // skopeo writes a classic archive (manifest.json only): lading synthesizes its manifest.
    const archive = join(work, 'skopeo.tar');
    await run('skopeo', ['copy', `oci:${layout}:v1`, `docker-archive:${archive}:team/app:v1`]);
    const out = join(work, 'converted');
    const cp = await lading('cp', `docker-archive:${archive}`, `oci:${out}:v1`);
    expect(cp.code, cp.stderr).toBe(0);
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as {
      manifests: { mediaType: string; digest: string }[];
    };
    const [entry] = index.manifests;
    expect(entry?.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    const manifest = JSON.parse(
      await readFile(join(out, 'blobs', 'sha256', entry?.digest.slice(7) ?? ''), 'utf8'),
    ) as { config: { mediaType: string }; layers: { mediaType: string }[] };
    expect(manifest.config.mediaType).toBe('application/vnd.oci.image.config.v1+json');
    expect(manifest.layers.map((l) => l.mediaType)).toEqual([
      'application/vnd.oci.image.layer.v1.tar',
    ]);
    // oci-image-tool 1.0.0-rc1 validates a layout as `--type image` (it detects imageLayout).
    const validated = await run('oci-image-tool', [
      'validate',
      '--type',
      'image',
      '--ref',
      'name=v1',
      out,
    ]);
    expect(validated.stdout).toContain('Validation succeeded');
    const inspected = await run('skopeo', ['inspect', `oci:${out}:v1`]);
    expect((JSON.parse(inspected.stdout) as { Layers: unknown[] }).Layers).toHaveLength(1);
    const bundle = join(work, 'converted-bundle');
    await run('umoci', ['unpack', '--rootless', '--image', `${out}:v1`, bundle]);
    expect(await readFile(join(bundle, 'rootfs', 'run'), 'utf8')).toBe('echo run\n');
  });

  it('keeps the bytes of an image copied by digest', async () => {
    const ref = `${host}/loc/multi:1`;
    const child = (await lading('digest', ref, '--platform', 'linux/amd64')).stdout.trim();
    const out = join(work, 'by-digest');
    const repo = ref.slice(0, ref.lastIndexOf(':'));
    const cp = await lading('cp', `${repo}@${child}`, `oci:${out}:v1`, '-q');
    expect(cp.code, cp.stderr).toBe(0);
    expect(cp.stdout.trim()).toBe(child);
    const raw = await lading('manifest', `oci:${out}:v1`, '--json');
    const { createHash } = await import('node:crypto');
    const bytes = await readFile(join(out, 'blobs', 'sha256', child.slice(7)));
    expect(`sha256:${createHash('sha256').update(bytes).digest('hex')}`).toBe(child);
    expect(raw.code).toBe(0);
  });
});
