// The least a Node process does to copy an image registry → registry or
// registry → OCI layout, as a yardstick for `lading cp`: node:http only (in
// Node's start-up snapshot, so next to nothing to load), one manifest GET,
// then per blob either POST, a GET piped into one PATCH while sha256 checks
// it, and PUT, or a GET piped into a file while sha256 checks it, renamed
// into blobs/ once it did; the manifest last (a PUT, or its blob file,
// index.json and oci-layout). No retries, no auth, no HEADs to skip what the
// destination has, no locks, no fsync, no progress: it shows what Node
// start-up plus the bytes cost on this machine, not a client anyone should
// use.
//
//   node bench/scripts/node-floor-copy.mjs HOST/REPO:TAG HOST/REPO:TAG
//   node bench/scripts/node-floor-copy.mjs HOST/REPO:TAG oci:DIR:TAG
//
// Plain HTTP; an OCI or Docker image manifest (not an index).
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

const agent = new http.Agent({ keepAlive: true });
const accept =
  'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';

/** repository splits HOST/REPO:TAG into the repository's /v2/ URL and the tag. */
function repository(ref) {
  const slash = ref.indexOf('/');
  const colon = ref.lastIndexOf(':');
  if (slash < 0 || colon < slash) throw new Error(`want HOST/REPO:TAG, got ${ref}`);
  return {
    base: `http://${ref.slice(0, slash)}/v2/${ref.slice(slash + 1, colon)}`,
    tag: ref.slice(colon + 1),
  };
}

/** send makes one request; `body` is a Buffer, a readable stream or nothing. */
function send(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, resolve);
    req.on('error', reject);
    if (body === undefined || Buffer.isBuffer(body)) req.end(body);
    else body.pipe(req);
  });
}

/** expect drains a response and fails unless its status is `status`. */
async function expect(res, status, what) {
  const chunks = [];
  for await (const c of res) chunks.push(c);
  if (res.statusCode !== status) throw new Error(`${what}: HTTP ${res.statusCode}`);
  return Buffer.concat(chunks);
}

async function copyBlob(src, dst, desc) {
  const post = await send(`${dst.base}/blobs/uploads/`, { method: 'POST' });
  await expect(post, 202, 'POST');
  const get = await send(`${src.base}/blobs/${desc.digest}`);
  if (get.statusCode !== 200) throw new Error(`GET ${desc.digest}: HTTP ${get.statusCode}`);
  const hash = createHash('sha256');
  get.on('data', (c) => hash.update(c));
  const patch = await send(new URL(post.headers.location, dst.base), {
    method: 'PATCH',
    headers: { 'content-type': 'application/octet-stream' },
    body: get,
  });
  await expect(patch, 202, 'PATCH');
  if (`sha256:${hash.digest('hex')}` !== desc.digest)
    throw new Error(`${desc.digest}: digest mismatch`);
  const done = new URL(patch.headers.location, dst.base);
  done.searchParams.set('digest', desc.digest);
  await expect(await send(done, { method: 'PUT' }), 201, 'PUT');
}

/** copyToLayout streams a blob into `dir`/blobs/sha256, renamed into place once its digest is checked. */
async function copyToLayout(src, dir, desc) {
  const get = await send(`${src.base}/blobs/${desc.digest}`);
  if (get.statusCode !== 200) throw new Error(`GET ${desc.digest}: HTTP ${get.statusCode}`);
  const hash = createHash('sha256');
  get.on('data', (c) => hash.update(c));
  const file = join(dir, 'blobs', 'sha256', desc.digest.slice(7));
  await pipeline(get, createWriteStream(`${file}.part`));
  if (`sha256:${hash.digest('hex')}` !== desc.digest)
    throw new Error(`${desc.digest}: digest mismatch`);
  await rename(`${file}.part`, file);
}

const [from, to] = process.argv.slice(2);
if (to === undefined)
  throw new Error('usage: node-floor-copy.mjs HOST/REPO:TAG HOST/REPO:TAG|oci:DIR:TAG');
const src = repository(from);
const get = await send(`${src.base}/manifests/${src.tag}`, { headers: { accept } });
const mediaType = get.headers['content-type'];
const raw = await expect(get, 200, 'GET manifest');
const manifest = JSON.parse(raw.toString('utf8'));
const blobs = [manifest.config, ...manifest.layers];
if (to.startsWith('oci:')) {
  const rest = to.slice(4);
  const colon = rest.lastIndexOf(':');
  const [dir, tag] = colon > 0 ? [rest.slice(0, colon), rest.slice(colon + 1)] : [rest, 'latest'];
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await Promise.all(blobs.map((d) => copyToLayout(src, dir, d)));
  const digest = `sha256:${createHash('sha256').update(raw).digest('hex')}`;
  await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), raw);
  const ref = { 'org.opencontainers.image.ref.name': tag };
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ mediaType, digest, size: raw.length, annotations: ref }],
  };
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
} else {
  const dst = repository(to);
  await Promise.all(blobs.map((d) => copyBlob(src, dst, d)));
  await expect(
    await send(`${dst.base}/manifests/${dst.tag}`, {
      method: 'PUT',
      headers: { 'content-type': mediaType },
      body: raw,
    }),
    201,
    'PUT manifest',
  );
}
agent.destroy();
