// Stateless replicas: two registry processes over one S3 bucket (Swift's
// s3api from s3-up.sh, seen through a recording proxy), with token auth
// sharing a signing secret, behind a per-request round-robin proxy.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  htpasswdEntry,
  recordingProxy,
  roundRobinProxy,
  type RecordingProxy,
  type RoundRobinProxy,
} from '@lading/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { req, sha256 } from './helpers.js';
import { startReplica, startS3Fixture, type Replica, type S3Fixture } from './s3-helpers.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const lading = fileURLToPath(new URL('../../cli/bin/lading.js', import.meta.url));
const user = 'alice';
const password = 'replica-secret-pw';

let s3: S3Fixture;
let s3Proxy: RecordingProxy;
let one: Replica;
let two: Replica;
let rr: RoundRobinProxy;
let home: string;

beforeAll(async () => {
  s3 = await startS3Fixture();
  s3Proxy = await recordingProxy(s3.server.endpoint);
  home = await mkdtemp(join(tmpdir(), 'lading-replicas-'));
  const env = {
    REPLICA_BUCKET: s3.bucket,
    REPLICA_PREFIX: 'replicas',
    REPLICA_ENDPOINT: s3Proxy.url,
    REPLICA_REGION: s3.server.region,
    REPLICA_ACCESS_KEY: s3.server.accessKeyId,
    REPLICA_SECRET_KEY: s3.server.secretAccessKey,
    REPLICA_USERS: htpasswdEntry(user, password),
    REPLICA_TOKEN_SECRET: randomBytes(32).toString('hex'),
  };
  [one, two] = await Promise.all([startReplica(env), startReplica(env)]);
  rr = await roundRobinProxy([one.url, two.url]);
}, 300_000);

afterAll(async () => {
  const opt = <T>(v: T): T | undefined => v;
  await opt(rr)?.close();
  await opt(one)?.stop();
  await opt(two)?.stop();
  await opt(s3Proxy)?.close();
  await opt(s3)?.stop();
  if (opt(home) !== undefined) await rm(home, { recursive: true, force: true });
}, 60_000);

function cli(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [lading, ...args, '-u', user, '-p', password], {
    env: {
      ...process.env,
      HOME: home,
      DOCKER_CONFIG: join(home, '.docker'),
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
    timeout: 150_000,
  });
}

/** bearer obtains a token for `scope` from a replica's token endpoint (Basic credentials). */
async function bearer(base: string, scope: string): Promise<Record<string, string>> {
  const challenge = await req('GET', `${base}/v2/`);
  const header = String(challenge.headers['www-authenticate']);
  const realm = /realm="([^"]+)"/.exec(header)?.[1] ?? '';
  const service = /service="([^"]+)"/.exec(header)?.[1] ?? '';
  const url = new URL(realm);
  url.searchParams.set('service', service);
  url.searchParams.set('scope', scope);
  const basic = Buffer.from(`${user}:${password}`).toString('base64');
  const r = await req('GET', url.toString(), { headers: { Authorization: `Basic ${basic}` } });
  const token = (r.json() as { token: string }).token;
  return { Authorization: `Bearer ${token}` };
}

// Generous: the S3 store shares a loaded machine with everything else.
describe('S3-backed replicas', { timeout: 180_000 }, () => {
  it('push, copy and pull with lading through two replicas behind a round-robin proxy', async () => {
    const host = new URL(rr.url).host;
    const src = join(home, 'ctx');
    await rm(src, { recursive: true, force: true });
    await mkdir(src, { recursive: true });
    await writeFile(join(src, 'big.bin'), randomBytes(7 * MiB));
    await writeFile(join(src, 'hello.txt'), 'hello from a replica\n');
    const before = [...rr.counts];
    await cli('build', src, `${host}/rep/app:v1`);
    await cli('cp', `${host}/rep/app:v1`, `${host}/rep/copy:v1`);
    await cli('pull', `${host}/rep/copy:v1`, `oci:${join(home, 'layout')}`);
    const pushed = (await cli('digest', `${host}/rep/app:v1`)).stdout.trim();
    expect(pushed).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect((await cli('digest', `${host}/rep/copy:v1`)).stdout.trim()).toBe(pushed);
    expect((await cli('digest', `oci:${join(home, 'layout')}:v1`)).stdout.trim()).toBe(pushed);
    // Each replica answered a share of the requests, and each sees everything.
    expect(rr.counts[0]! - before[0]!).toBeGreaterThan(2);
    expect(rr.counts[1]! - before[1]!).toBeGreaterThan(2);
    for (const r of [one, two]) {
      const direct = await req('HEAD', `${r.url}/v2/rep/copy/manifests/v1`, {
        headers: await bearer(r.url, 'repository:rep/copy:pull'),
      });
      expect(direct.headers['docker-content-digest']).toBe(pushed);
    }
  });

  it("follows presigned redirects to the object store without the registry's credentials", async () => {
    s3Proxy.clear();
    const host = new URL(rr.url).host;
    await cli('pull', `${host}/rep/app:v1`, `oci:${join(home, 'layout2')}`);
    const presigned = s3Proxy.requests.filter((r) => r.path.includes('X-Amz-Signature='));
    expect(presigned.length).toBeGreaterThan(0);
    for (const r of presigned) {
      expect(r.method).toBe('GET');
      expect(r.headers.authorization).toBeUndefined();
      expect(r.status).toBe(200);
    }
    // The replicas' own S3 calls are SigV4-signed; nothing carries Basic or Bearer.
    for (const r of s3Proxy.requests) {
      expect(r.headers.authorization ?? '').not.toMatch(/^(Basic|Bearer) /i);
    }
  });

  it('takes the chunks of one upload on alternating replicas', async () => {
    const auth = await bearer(rr.url, 'repository:rep/chunks:pull,push');
    const data = randomBytes(11 * MiB + 5);
    const before = [...rr.counts];
    const post = await req('POST', `${rr.url}/v2/rep/chunks/blobs/uploads/`, { headers: auth });
    expect(post.status).toBe(202);
    const path = String(post.headers.location);
    const size = 2 * MiB + 17;
    for (let offset = 0; offset < data.length; offset += size) {
      const chunk = data.subarray(offset, offset + size);
      const r = await req('PATCH', `${rr.url}${path}`, {
        body: chunk,
        headers: { ...auth, 'Content-Range': `${offset}-${offset + chunk.length - 1}` },
      });
      expect(r.status).toBe(202);
      expect(r.headers.range).toBe(`0-${offset + chunk.length - 1}`);
    }
    const put = await req('PUT', `${rr.url}${path}?digest=${sha256(data)}`, { headers: auth });
    expect(put.status).toBe(201);
    expect(rr.counts[0]! - before[0]!).toBeGreaterThanOrEqual(3);
    expect(rr.counts[1]! - before[1]!).toBeGreaterThanOrEqual(3);
    const get = await req('GET', `${rr.url}/v2/rep/chunks/blobs/${sha256(data)}`, {
      headers: auth,
    });
    expect(get.status).toBe(307);
    const object = await req('GET', String(get.headers.location));
    expect(sha256(object.body)).toBe(sha256(data));
  });

  it('loses nothing committed when a replica is killed mid-upload, and another finishes it', async () => {
    const scope = 'repository:rep/killed:pull,push';
    const authOne = await bearer(one.url, scope);
    const data = randomBytes(9 * MiB + 3);
    const post = await req('POST', `${one.url}/v2/rep/killed/blobs/uploads/`, { headers: authOne });
    const path = String(post.headers.location);
    const first = await req('PATCH', `${one.url}${path}`, {
      body: data.subarray(0, 6 * MiB),
      headers: authOne,
    });
    expect(first.headers.range).toBe(`0-${6 * MiB - 1}`);
    // A second chunk starts streaming, then the replica dies under it.
    let sent = false;
    const slow = new Readable({
      read() {
        if (sent) return; // never ends on its own
        sent = true;
        this.push(data.subarray(6 * MiB, 7 * MiB));
      },
    });
    const inFlight = req('PATCH', `${one.url}${path}`, { body: slow, headers: authOne }).catch(
      (e: unknown) => e,
    );
    await new Promise((r) => setTimeout(r, 500));
    const died = new Promise((r) => one.child.once('exit', r));
    one.child.kill('SIGKILL');
    await died;
    slow.destroy();
    expect(await inFlight).toBeInstanceOf(Error);
    // The other replica knows the session and every committed byte.
    const authTwo = await bearer(two.url, scope);
    const status = await req('GET', `${two.url}${path}`, { headers: authTwo });
    expect(status.status).toBe(204);
    expect(status.headers.range).toBe(`0-${6 * MiB - 1}`);
    const rest = await req('PATCH', `${two.url}${path}`, {
      body: data.subarray(6 * MiB),
      headers: { ...authTwo, 'Content-Range': `${6 * MiB}-${data.length - 1}` },
    });
    expect(rest.status).toBe(202);
    const put = await req('PUT', `${two.url}${path}?digest=${sha256(data)}`, { headers: authTwo });
    expect(put.status).toBe(201);
    const get = await req('GET', `${two.url}/v2/rep/killed/blobs/${sha256(data)}`, {
      headers: authTwo,
    });
    const object = await req('GET', String(get.headers.location));
    expect(sha256(object.body)).toBe(sha256(data));
  });
});
