import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  appendLayers,
  copy,
  createHasher,
  emptyImage,
  isLadingError,
  layerFromBytes,
  memoryTarget,
  validateImage,
  type Digest,
  type Image,
} from '@lading/core';
import { layerFromOpener, streamLayer } from '@lading/layers';
import { createRegistry, memoryStorage } from '@lading/registry';
import {
  RegistryClient,
  pullImage,
  registryTarget,
  write,
  type RemoteOptions,
} from '@lading/remote';
import { htpasswdEntry, singleFileTar, startDistributionRegistry } from '@lading/testing';
import { faultProxy, type FaultRule } from './fault-proxy.js';

/** Scenario is one fault script run against one operation. */
export type Scenario = {
  readonly name: string;
  readonly op: 'write' | 'pull' | 'copy';
  readonly mode?: 'stream' | 'chunked';
  readonly rules: readonly FaultRule[];
};

const uploads = /\/blobs\/uploads\//;
const uploadPost = /\/blobs\/uploads\/(\?.*)?$/;
const blobGet = /\/blobs\/sha256:/;
const manifests = /\/manifests\//;

/** scenarios lists every fault the client is run against. */
export const scenarios: readonly Scenario[] = [
  {
    name: 'reset mid-PATCH, stream layer',
    op: 'write',
    rules: [
      {
        method: 'PATCH',
        path: uploads,
        times: 2,
        action: { kind: 'reset-request', afterBytes: 256 * 1024 },
      },
    ],
  },
  {
    name: 'reset mid-PATCH, chunked re-openable layer',
    op: 'write',
    mode: 'chunked',
    rules: [
      {
        // The big layer's second 256 KiB chunk, whenever the small layer's
        // one PATCH comes (the two uploads race).
        method: 'PATCH',
        path: uploads,
        minLength: 128 * 1024,
        nth: 2,
        action: { kind: 'reset-request', afterBytes: 64 * 1024 },
      },
    ],
  },
  {
    name: '500 on the upload POST',
    op: 'write',
    rules: [{ method: 'POST', path: uploadPost, action: { kind: 'status', status: 500 } }],
  },
  {
    name: '502 on a PATCH',
    op: 'write',
    rules: [{ method: 'PATCH', path: uploads, action: { kind: 'status', status: 502 } }],
  },
  {
    name: '503 on the manifest PUT',
    op: 'write',
    rules: [{ method: 'PUT', path: manifests, action: { kind: 'status', status: 503 } }],
  },
  {
    name: '429 + Retry-After on the manifest PUT',
    op: 'write',
    rules: [
      {
        method: 'PUT',
        path: manifests,
        action: { kind: 'status', status: 429, headers: { 'retry-after': '1' } },
      },
    ],
  },
  {
    name: '416 on a chunk',
    op: 'write',
    mode: 'chunked',
    rules: [
      {
        method: 'PATCH',
        path: uploads,
        minLength: 128 * 1024,
        nth: 2,
        action: { kind: 'status', status: 416 },
      },
    ],
  },
  {
    name: 'stall 1.5 s on a PATCH',
    op: 'write',
    rules: [{ method: 'PATCH', path: uploads, action: { kind: 'stall', ms: 1500 } }],
  },
  {
    name: 'connection dropped before the manifest PUT answer',
    op: 'write',
    rules: [{ method: 'PUT', path: manifests, action: { kind: 'drop-after-forward' } }],
  },
  {
    name: 'reset mid blob GET',
    op: 'pull',
    rules: [
      { method: 'GET', path: blobGet, action: { kind: 'reset-response', afterBytes: 100_000 } },
    ],
  },
  {
    name: 'truncated blob body',
    op: 'pull',
    rules: [{ method: 'GET', path: blobGet, action: { kind: 'truncate', keepBytes: 100_000 } }],
  },
  {
    name: 'corrupted blob byte',
    op: 'pull',
    rules: [{ method: 'GET', path: blobGet, action: { kind: 'corrupt', offset: 1000 } }],
  },
  {
    name: 'wrong Docker-Content-Digest on the manifest',
    op: 'pull',
    rules: [{ method: 'GET', path: manifests, action: { kind: 'wrong-digest' } }],
  },
  {
    name: 'blob GET redirected to another origin',
    op: 'pull',
    rules: [{ method: 'GET', path: blobGet, times: 10, action: { kind: 'redirect' } }],
  },
  {
    name: '503 on the manifest GET',
    op: 'pull',
    rules: [{ method: 'GET', path: manifests, action: { kind: 'status', status: 503 } }],
  },
  {
    name: 'copy: reset mid blob GET',
    op: 'copy',
    rules: [
      { method: 'GET', path: blobGet, action: { kind: 'reset-response', afterBytes: 100_000 } },
    ],
  },
  {
    name: 'copy: corrupted blob byte',
    op: 'copy',
    rules: [{ method: 'GET', path: blobGet, action: { kind: 'corrupt', offset: 5000 } }],
  },
  {
    name: 'copy: redirected blobs',
    op: 'copy',
    rules: [{ method: 'GET', path: blobGet, times: 10, action: { kind: 'redirect' } }],
  },
];

/** Environment is a registry the scenarios run against. */
export type Environment = {
  readonly name: string;
  readonly url: string;
  readonly host: string;
  readonly credentials: { readonly username: string; readonly password: string };
  close(): Promise<void>;
};

const credentials = { username: 'builder', password: 'pw-that-must-not-leak-7f3a' };

/** ladingEnvironment is @lading/registry with bearer-token auth. */
export async function ladingEnvironment(): Promise<Environment> {
  const registry = createRegistry({
    storage: memoryStorage(),
    auth: { type: 'token', users: htpasswdEntry(credentials.username, credentials.password) },
  });
  const { url } = await registry.listen({ host: '127.0.0.1', port: 0 });
  return {
    name: '@lading/registry (token)',
    url,
    host: new URL(url).host,
    credentials,
    close: () => registry.close(),
  };
}

/** distributionEnvironment is the Debian CNCF registry with htpasswd. */
export async function distributionEnvironment(): Promise<Environment> {
  const r = await startDistributionRegistry({ htpasswd: credentials });
  return {
    name: 'docker-registry 2.8 (htpasswd)',
    url: r.url,
    host: r.host,
    credentials,
    close: () => r.stop(),
  };
}

/** Outcome is what one scenario did. */
export type Outcome = {
  readonly scenario: string;
  readonly environment: string;
  readonly injected: number;
  readonly completed: boolean;
  readonly cleanFailure: boolean;
  /** error is the failure's code and message (redaction checked). */
  readonly error: string | undefined;
  readonly dataLost: number;
  readonly leaks: string[];
  readonly ms: number;
};

function image(kind: 'stream' | 'opener'): Image {
  // Random content does not compress: the blob stays about 1.5 MiB.
  const content = singleFileTar('payload.bin', randomBytes(1536 * 1024));
  const big =
    kind === 'stream'
      ? streamLayer(Readable.from([content]))
      : layerFromOpener(() => Readable.from([content]));
  const small = layerFromBytes(singleFileTar('small.bin', randomBytes(4096)));
  return appendLayers(emptyImage(), small, big);
}

async function hash(stream: Readable): Promise<Digest> {
  const h = createHasher();
  for await (const c of stream) h.update(c as Buffer);
  return h.digest();
}

/** integrity checks every tagged manifest of `repo`, read directly: each blob present and verified. Returns broken count. */
async function integrity(env: Environment, repo: string): Promise<number> {
  const client = new RegistryClient(env.host, {
    auth: env.credentials,
    useStoredCredentials: false,
  });
  let tags: string[];
  try {
    tags = await client.listTags(repo);
  } catch (err) {
    if (isLadingError(err, 'NOT_FOUND')) return 0;
    throw err;
  }
  let broken = 0;
  for (const tag of tags) {
    try {
      await validateImage(
        await pullImage(`${env.host}/${repo}:${tag}`, {
          auth: env.credentials,
          useStoredCredentials: false,
        }),
      );
    } catch {
      broken++;
    }
  }
  return broken;
}

function leaksIn(text: string, env: Environment): string[] {
  const out: string[] = [];
  if (text.includes(env.credentials.password)) out.push('password in an error message');
  if (/bearer\s+[a-z0-9._-]{12,}/i.test(text)) out.push('token in an error message');
  if (
    text.includes(
      Buffer.from(`${env.credentials.username}:${env.credentials.password}`).toString('base64'),
    )
  )
    out.push('basic credentials in an error message');
  return out;
}

/** runScenario runs one scenario against one environment and judges the outcome. */
export async function runScenario(
  env: Environment,
  scenario: Scenario,
  index: number,
): Promise<Outcome> {
  const repo = `faults/s${index}`;
  const direct: RemoteOptions = { auth: env.credentials, useStoredCredentials: false };
  let expected: Digest | undefined;
  let expectedLayers: Digest[] = [];
  if (scenario.op !== 'write') {
    const img = image('opener');
    expected = (await write(`${env.host}/${repo}:v1`, img, direct).done).digest;
    expectedLayers = (await img.manifest()).layers.map((l) => l.digest);
  }
  const t0 = performance.now();
  const proxy = await faultProxy(env.url, scenario.rules);
  // Timeouts keep a scenario that stalls from holding the run for minutes.
  const options: RemoteOptions = {
    ...direct,
    retry: { retries: 3, minDelayMs: 20, maxDelayMs: 1500 },
    headersTimeout: 5000,
    bodyTimeout: 5000,
  };
  const ref = `${proxy.host}/${repo}:v1`;
  let completed = false;
  let error: unknown;
  let dataLost = 0;
  try {
    if (scenario.op === 'write') {
      const img = image(scenario.mode === 'chunked' ? 'opener' : 'stream');
      const push = write(ref, img, {
        ...options,
        uploadMode: scenario.mode ?? 'stream',
        chunkSize: 256 * 1024,
      });
      const result = await push.done;
      completed = true;
      // Read back directly, not through the proxy: the bytes must be the ones built.
      const back = await pullImage(`${env.host}/${repo}@${result.digest}`, direct);
      await validateImage(back);
      if ((await back.digest()) !== (await img.digest())) dataLost++;
    } else if (scenario.op === 'pull') {
      const img = await pullImage(ref, options);
      const got: Digest[] = [];
      for (const layer of await img.layers()) got.push(await hash(layer.compressed()));
      completed = true;
      if (got.join() !== expectedLayers.join() || (await img.digest()) !== expected) dataLost++;
    } else {
      const mem = memoryTarget();
      const root = await copy(registryTarget(`${proxy.host}/${repo}`, options), 'v1', mem, 'v1');
      completed = true;
      if (root.digest !== expected) dataLost++;
      for (const d of expectedLayers) {
        const blob = await mem
          .fetch({ mediaType: 'application/octet-stream', digest: d, size: 0 })
          .catch(() => undefined);
        if (blob === undefined || (await hash(blob)) !== d) dataLost++;
      }
    }
  } catch (err) {
    error = err;
  } finally {
    await proxy.close();
  }
  dataLost += await integrity(env, repo);
  const message =
    error === undefined
      ? ''
      : `${(error as Error).message} ${(error as { cause?: { message?: string } }).cause?.message ?? ''}`;
  const leaks = leaksIn(message, env);
  for (const r of proxy.redirected)
    if (r.authorization)
      leaks.push(`Authorization sent to the redirect origin (${r.method} ${r.path})`);
  return {
    scenario: scenario.name,
    environment: env.name,
    injected: proxy.injected(),
    completed,
    cleanFailure: !completed && isLadingError(error),
    error:
      error === undefined
        ? undefined
        : `${isLadingError(error) ? error.code : 'UNTYPED'}: ${(error as Error).message.slice(0, 160)}`,
    dataLost,
    leaks,
    ms: Math.round(performance.now() - t0),
  };
}
