import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text: string;
  json: () => unknown;
  code: () => string | undefined;
}

export interface ReqOptions {
  headers?: Record<string, string | number>;
  body?: Buffer | string | Readable;
}

/** req sends one HTTP request over a fresh connection and buffers the reply. */
export function req(method: string, url: string, options: ReqOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    // Keep the path verbatim (URL would resolve dot segments).
    const rawPath = url.replace(/^https?:\/\/[^/]+/, '');
    const headers: Record<string, string | number> = { ...options.headers };
    const body = options.body;
    if (
      (typeof body === 'string' || Buffer.isBuffer(body)) &&
      headers['Content-Length'] === undefined
    ) {
      headers['Content-Length'] = Buffer.byteLength(body);
    }
    const r = httpRequest(
      {
        method,
        host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: u.port,
        path: rawPath,
        headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const b = Buffer.concat(chunks);
          const text = b.toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: b,
            text,
            json: () => JSON.parse(text) as unknown,
            code: () => {
              try {
                return (JSON.parse(text) as { errors?: { code: string }[] }).errors?.[0]?.code;
              } catch {
                return undefined;
              }
            },
          });
        });
      },
    );
    r.on('error', reject);
    if (body === undefined) r.end();
    else if (typeof body === 'string' || Buffer.isBuffer(body)) r.end(body);
    else body.pipe(r);
  });
}

export function sha256(data: Buffer | string): `sha256:${string}` {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** pushBlob uploads a blob monolithically (POST then PUT) and returns its digest. */
export async function pushBlob(
  base: string,
  name: string,
  data: Buffer | string,
  headers: Record<string, string> = {},
): Promise<string> {
  const digest = sha256(data);
  const post = await req('POST', `${base}/v2/${name}/blobs/uploads/`, { headers });
  if (post.status !== 202) throw new Error(`POST ${post.status} ${post.text}`);
  const loc = new URL(post.headers.location!, base);
  loc.searchParams.set('digest', digest);
  const put = await req('PUT', loc.toString(), {
    body: data,
    headers: { 'Content-Type': 'application/octet-stream', ...headers },
  });
  if (put.status !== 201) throw new Error(`PUT ${put.status} ${put.text}`);
  return digest;
}

export interface PushedImage {
  manifest: Buffer;
  digest: string;
  config: string;
  layer: string;
}

/** pushImage pushes a one-layer OCI image and tags it. */
export async function pushImage(
  base: string,
  name: string,
  tag: string,
  extra: {
    layer?: string;
    subject?: { digest: string; size: number; mediaType: string };
    artifactType?: string;
    annotations?: Record<string, string>;
  } = {},
  headers: Record<string, string> = {},
): Promise<PushedImage> {
  const layerData = extra.layer ?? `layer of ${name}:${tag}`;
  const configData = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: [] },
  });
  const layer = await pushBlob(base, name, layerData, headers);
  const config = await pushBlob(base, name, configData, headers);
  const doc: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: config,
      size: Buffer.byteLength(configData),
    },
    layers: [
      {
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: layer,
        size: Buffer.byteLength(layerData),
      },
    ],
  };
  if (extra.subject) doc.subject = extra.subject;
  if (extra.artifactType) doc.artifactType = extra.artifactType;
  if (extra.annotations) doc.annotations = extra.annotations;
  const manifest = Buffer.from(JSON.stringify(doc));
  const put = await req('PUT', `${base}/v2/${name}/manifests/${tag}`, {
    body: manifest,
    headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json', ...headers },
  });
  if (put.status !== 201) throw new Error(`manifest PUT ${put.status} ${put.text}`);
  return { manifest, digest: sha256(manifest), config, layer };
}

/** sleep resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => {
    setTimeout(r, ms);
  });
}

/** eventually polls `check` until it resolves true, or gives up after `ms` (default 10 s). */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  ms = 10_000,
): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
}
