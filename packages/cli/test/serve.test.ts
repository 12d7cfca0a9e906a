import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basicAuth as basic } from '@lading/testing';
import { lading } from './helpers.js';

const bin = fileURLToPath(new URL('../bin/lading.js', import.meta.url));

const children: ChildProcess[] = [];
let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lading-serve-'));
  await writeFile(
    join(dir, 'htpasswd'),
    // bcrypt (cost 4) of a-pw and b-pw
    'alice:$2b$04$V3FvMOe7cP87bAcRPXIWae/y8DNUKU5ESBgqApNyvsl.pq2zCYRzK\n' +
      'bob:$2b$04$WXET/qMJJHQYLw7GeVKCNusrvOYAxAhELxsbq0NFMJrn0bcU0VDBK\n',
  );
  await writeFile(
    join(dir, 'grants.json'),
    JSON.stringify({ grants: [{ users: 'alice', repositories: '**', actions: ['pull', 'push'] }] }),
  );
});

afterAll(async () => {
  for (const c of children) c.kill('SIGTERM');
  await rm(dir, { recursive: true, force: true });
});

/** serve starts `lading serve --port 0 --json …` and resolves its URL. */
function serve(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, 'serve', '--port', '0', '--json', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const url = /"url": ?"([^"]+)"/.exec(out)?.[1];
      if (url !== undefined) resolve(url);
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => {
      reject(new Error(`serve exited ${String(code)}: ${err}`));
    });
  });
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
}

function send(
  method: string,
  url: string,
  headers: Record<string, string> = {},
  body?: Buffer,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const r = request(url, { method, headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers });
      });
    });
    r.on('error', reject);
    r.end(body);
  });
}

async function pushManifest(url: string, headers: Record<string, string> = {}): Promise<void> {
  const config = Buffer.from('{}');
  const digest = `sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a`;
  const post = await send('POST', `${url}/v2/r/blobs/uploads/?digest=${digest}`, headers, config);
  expect(post.status).toBe(201);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: 2 },
      layers: [],
    }),
  );
  const put = await send(
    'PUT',
    `${url}/v2/r/manifests/v1`,
    { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json', ...headers },
    manifest,
  );
  expect(put.status).toBe(201);
}

describe('lading serve hardening flags', () => {
  it('refuses deletes unless --allow-delete', async () => {
    const closed = await serve();
    await pushManifest(closed);
    expect((await send('DELETE', `${closed}/v2/r/manifests/v1`)).status).toBe(405);
    const open = await serve('--allow-delete');
    await pushManifest(open);
    expect((await send('DELETE', `${open}/v2/r/manifests/v1`)).status).toBe(202);
  });

  it('applies --grants, --token-realm and the upload limits', async () => {
    const url = await serve(
      '--htpasswd',
      join(dir, 'htpasswd'),
      '--grants',
      join(dir, 'grants.json'),
      '--max-upload-size',
      '1K',
      '--max-upload-sessions',
      '2',
    );
    await pushManifest(url, basic('alice', 'a-pw'));
    expect((await send('GET', `${url}/v2/r/manifests/v1`, basic('bob', 'b-pw'))).status).toBe(403);
    const post = await send('POST', `${url}/v2/r/blobs/uploads/`, basic('alice', 'a-pw'));
    const patch = await send(
      'PATCH',
      `${url}${String(post.headers.location)}`,
      basic('alice', 'a-pw'),
      Buffer.alloc(2048),
    );
    expect(patch.status).toBe(413);
    await send('POST', `${url}/v2/r/blobs/uploads/`, basic('alice', 'a-pw'));
    await send('POST', `${url}/v2/r/blobs/uploads/`, basic('alice', 'a-pw'));
    expect((await send('POST', `${url}/v2/r/blobs/uploads/`, basic('alice', 'a-pw'))).status).toBe(
      429,
    );

    const token = await serve(
      '--htpasswd',
      join(dir, 'htpasswd'),
      '--token',
      '--token-realm',
      'https://registry.example.test/token',
    );
    const challenge = await send('GET', `${token}/v2/`);
    expect(String(challenge.headers['www-authenticate'])).toContain(
      'realm="https://registry.example.test/token"',
    );
  });

  it('closes a silent connection after --headers-timeout', async () => {
    const url = new URL(await serve('--headers-timeout', '0.5'));
    const s = connect(Number(url.port), '127.0.0.1');
    // Node's own headers check may answer 408 before closing: the socket must
    // be read to its end for 'close' to come.
    s.resume();
    s.on('error', () => undefined);
    const t0 = Date.now();
    await new Promise((r) => s.once('close', r));
    expect(Date.now() - t0).toBeLessThan(10_000); // never, without the limit
  });

  it('exits 2 on bad values and on --token on a public address without --token-realm', async () => {
    const htpasswd = join(dir, 'htpasswd');
    for (const argv of [
      ['serve', '--max-upload-size', 'lots'],
      ['serve', '--headers-timeout', '-1'],
      ['serve', '--max-connections', '1.5'],
      ['serve', '--htpasswd', htpasswd, '--token', '--host', '0.0.0.0'],
      ['serve', '--token-realm', 'https://x/token'],
      ['serve', '--grants', join(dir, 'nope.json'), '--htpasswd', htpasswd],
      ['serve', '--port', 'abc'],
      ['serve', '--storage', htpasswd],
    ]) {
      const { code, stderr } = await lading(...argv);
      expect(code, argv.join(' ')).toBe(2);
      expect(stderr).toMatch(/^lading: /);
    }
    // a file an option names that is not there: the option, the file, no layout hint
    for (const [option, other] of [
      ['--htpasswd', []],
      ['--grants', ['--htpasswd', htpasswd]],
    ] as const) {
      const missing = join(dir, 'missing-file');
      const { code, stderr } = await lading('serve', option, missing, ...other);
      expect(code).toBe(2);
      expect(stderr).toBe(
        `lading: ${option} ${missing}: no such file or directory\nhint: check the file named by the option\n`,
      );
    }
  });
});
