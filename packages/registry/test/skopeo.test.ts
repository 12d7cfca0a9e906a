// A real client against the registry: skopeo (containers/image) pushes an
// OCI layout made with umoci, inspects, pulls back, copies across
// repositories and deletes — open, basic and token auth.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, filesystemStorage, type RegistryAuth } from '../src/index.js';
import { req } from './helpers.js';

const run = promisify(execFile);
let work: string;
let layout: string;
let manifestDigest: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'lading-skopeo-'));
  layout = join(work, 'layout');
  await run('umoci', ['init', '--layout', layout]);
  await run('umoci', ['new', '--image', `${layout}:v1`]);
  const content = join(work, 'content');
  mkdirSync(content);
  writeFileSync(join(content, 'hello.txt'), 'hello from lading\n'.repeat(1000));
  await run('umoci', ['insert', '--image', `${layout}:v1`, content, '/app']);
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  manifestDigest = index.manifests[0]!.digest;
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

async function withRegistry(
  auth: RegistryAuth,
  fn: (host: string) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(work, 'store-'));
  const registry = createRegistry({ storage: filesystemStorage(dir), auth });
  const { port } = await registry.listen();
  try {
    await fn(`127.0.0.1:${port}`);
  } finally {
    await registry.close();
  }
}

describe('skopeo against the registry', () => {
  it('pushes, inspects, pulls back, copies across repositories and deletes (no auth)', async () => {
    await withRegistry({ type: 'none' }, async (host) => {
      await run('skopeo', [
        'copy',
        '--dest-tls-verify=false',
        `oci:${layout}:v1`,
        `docker://${host}/team/app:v1`,
      ]);
      const inspect = JSON.parse(
        (await run('skopeo', ['inspect', '--tls-verify=false', `docker://${host}/team/app:v1`]))
          .stdout,
      ) as {
        Digest: string;
        RepoTags: string[];
        Layers: string[];
      };
      expect(inspect.Digest).toBe(manifestDigest);
      expect(inspect.RepoTags).toEqual(['v1']);
      expect(inspect.Layers).toHaveLength(1);
      const back = join(work, 'back-open');
      await run('skopeo', [
        'copy',
        '--src-tls-verify=false',
        `docker://${host}/team/app:v1`,
        `oci:${back}:v1`,
      ]);
      const index = JSON.parse(readFileSync(join(back, 'index.json'), 'utf8')) as {
        manifests: { digest: string }[];
      };
      expect(index.manifests[0]!.digest).toBe(manifestDigest);
      // Registry-to-registry copy inside one registry (skopeo tries a cross-repo mount).
      await run('skopeo', [
        'copy',
        '--src-tls-verify=false',
        '--dest-tls-verify=false',
        `docker://${host}/team/app:v1`,
        `docker://${host}/other/app:copied`,
      ]);
      const raw = (
        await run('skopeo', [
          'inspect',
          '--raw',
          '--tls-verify=false',
          `docker://${host}/other/app:copied`,
        ])
      ).stdout;
      expect(raw).toBe(
        readFileSync(join(layout, 'blobs', 'sha256', manifestDigest.slice(7)), 'utf8'),
      );
      await run('skopeo', ['delete', '--tls-verify=false', `docker://${host}/other/app:copied`]);
      expect(
        (await req('GET', `http://${host}/v2/other/app/manifests/${manifestDigest}`)).status,
      ).toBe(404);
      expect((await req('GET', `http://${host}/v2/team/app/manifests/v1`)).status).toBe(200);
    });
  });

  it('pushes and pulls with basic auth credentials, and fails without them', async () => {
    const htpasswd = `ci:${bcrypt.hashSync('s3cret', 4)}\n`;
    await withRegistry({ type: 'basic', htpasswd }, async (host) => {
      await run('skopeo', [
        'copy',
        '--dest-tls-verify=false',
        '--dest-creds',
        'ci:s3cret',
        `oci:${layout}:v1`,
        `docker://${host}/basic/app:v1`,
      ]);
      const out = await run('skopeo', [
        'inspect',
        '--tls-verify=false',
        '--creds',
        'ci:s3cret',
        `docker://${host}/basic/app:v1`,
      ]);
      expect((JSON.parse(out.stdout) as { Digest: string }).Digest).toBe(manifestDigest);
      await expect(
        run('skopeo', [
          'inspect',
          '--tls-verify=false',
          '--no-creds',
          `docker://${host}/basic/app:v1`,
        ]),
      ).rejects.toThrow();
    });
  });

  it('pushes with token auth, pulls anonymously, and cannot push anonymously', async () => {
    const users = `ci:${bcrypt.hashSync('s3cret', 4)}\n`;
    await withRegistry(
      { type: 'token', users, anonymousPull: true, service: 'lading-test' },
      async (host) => {
        await run('skopeo', [
          'copy',
          '--dest-tls-verify=false',
          '--dest-creds',
          'ci:s3cret',
          `oci:${layout}:v1`,
          `docker://${host}/token/app:v1`,
        ]);
        const out = await run('skopeo', [
          'inspect',
          '--tls-verify=false',
          '--no-creds',
          `docker://${host}/token/app:v1`,
        ]);
        expect((JSON.parse(out.stdout) as { Digest: string }).Digest).toBe(manifestDigest);
        const failed = await run('skopeo', [
          'copy',
          '--dest-tls-verify=false',
          '--dest-no-creds',
          `oci:${layout}:v1`,
          `docker://${host}/token/anon:v1`,
        ]).then(
          () => '',
          (err: unknown) => String((err as { stderr?: string }).stderr),
        );
        expect(failed).toMatch(/unauthorized|denied|authentication required/i);
      },
    );
  });
});
