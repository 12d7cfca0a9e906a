// Kaniko-style build: the push starts — and is authorized by the registry —
// before the layer exists; the "build" then produces the layer tar, which
// streams through gzip and sha256 straight into the open upload session.
//
//   node examples/kaniko-build/dist/main.js [DIR] [REF]
//
// Without REF an in-process registry is started on 127.0.0.1.
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { appendLayers, emptyImage, withConfig, isLadingError } from '@lading/core';
import { directoryTar, streamLayer } from '@lading/layers';
import { createRegistry, memoryStorage } from '@lading/registry';
import { pullImage, write } from '@lading/remote';

const here = dirname(fileURLToPath(import.meta.url));
const dir = process.argv[2] ?? join(here, '..', 'src');
let ref = process.argv[3];
const registry = ref === undefined ? createRegistry({ storage: memoryStorage() }) : undefined;
if (registry !== undefined) {
  const { port } = await registry.listen({ host: '127.0.0.1', port: 0 });
  ref = `127.0.0.1:${port}/examples/kaniko:latest`;
}
if (ref === undefined) throw new Error('unreachable');

const t0 = performance.now();
const ms = (): string => `${(performance.now() - t0).toFixed(0)} ms`;

// The layer is a single-pass stream whose bytes do not exist yet.
const tar = new PassThrough();
const layer = streamLayer(tar);
const image = withConfig(appendLayers(emptyImage(), layer), { cmd: ['/bin/sh'] });

const push = write(ref, image);
push.on('progress', (e) => {
  if (e.type === 'blob-done' || e.type === 'manifest-done')
    console.log(`${ms()}  ${e.type} ${e.digest}`);
});
try {
  await push.authorized;
} catch (err) {
  // A bad credential or missing push permission fails here, before the build ran.
  console.error(`not allowed to push to ${ref}: ${isLadingError(err) ? err.code : String(err)}`);
  process.exitCode = 1;
  await registry?.close();
  process.exit();
}
console.log(`${ms()}  authorized for ${ref}; building ${dir}`);

// The "build": write the filesystem tar into the layer while the upload runs.
await pipeline(directoryTar(dir), tar);
const result = await push.done;
console.log(`${ms()}  pushed ${result.reference} (${result.size} bytes of manifest)`);

const back = await pullImage(ref);
const same = (await back.digest()) === result.digest;
console.log(`${ms()}  pulled back: ${same ? 'same digest' : 'DIFFERENT digest'}`);
if (!same) process.exitCode = 1;
await registry?.close();
