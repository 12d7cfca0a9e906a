// Kaniko-style build: the push starts — and is authorized by the registry —
// while the build that produces the layer tar is still running; the tar
// streams from the build's stdout through gzip and sha256 straight into the
// open upload session. A build that fails (exits non-zero, or is killed)
// fails the push: no manifest, no tag.
//
//   node examples/kaniko-build/dist/main.js [DIR] [REF]
//
// Without REF an in-process registry is started on 127.0.0.1.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { appendLayers, emptyImage, withConfig, isLadingError } from '@lading/core';
import { layerFromProcess } from '@lading/layers';
import { createRegistry, memoryStorage } from '@lading/registry';
import { RegistryClient, pullImage, write } from '@lading/remote';

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

// The "build" is a child process writing the filesystem tar to its stdout.
// layerFromProcess reads it once, as the upload asks for bytes, and fails the
// layer when the process exits non-zero or is killed.
const build = (from: string) =>
  spawn('tar', ['-cf', '-', '-C', from, '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
const imageOf = (from: string) =>
  withConfig(appendLayers(emptyImage(), layerFromProcess(build(from))), { cmd: ['/bin/sh'] });

const push = write(ref, imageOf(dir));
push.on('progress', (e) => {
  if (e.type === 'blob-done' || e.type === 'manifest-done')
    console.log(`${ms()}  ${e.type} ${e.digest}`);
});
try {
  await push.authorized;
} catch (err) {
  // A bad credential or missing push permission fails here, before the build is read.
  console.error(`not allowed to push to ${ref}: ${isLadingError(err) ? err.code : String(err)}`);
  process.exitCode = 1;
  await registry?.close();
  process.exit();
}
console.log(`${ms()}  authorized for ${ref}; streaming the build of ${dir}`);
const result = await push.done;
console.log(`${ms()}  pushed ${result.reference} (${result.size} bytes of manifest)`);

const back = await pullImage(ref);
const same = (await back.digest()) === result.digest;
console.log(`${ms()}  pulled back: ${same ? 'same digest' : 'DIFFERENT digest'}`);
if (!same) process.exitCode = 1;

// A build that fails: tar exits 2 on a missing directory (after writing an
// empty archive). The push rejects and the tag is never written.
const failedRef = `${ref.slice(0, ref.lastIndexOf(':'))}:broken`;
try {
  await write(failedRef, imageOf(join(dir, 'no-such-dir'))).done;
  console.error(`${ms()}  a failed build was pushed: this is a bug`);
  process.exitCode = 1;
} catch (err) {
  const tagged = await new RegistryClient(ref.slice(0, ref.indexOf('/'))).headManifest(
    failedRef.slice(failedRef.indexOf('/') + 1, failedRef.lastIndexOf(':')),
    'broken',
  );
  console.log(
    `${ms()}  failed build refused: ${isLadingError(err) ? err.code : String(err)}; tag written: ${tagged !== undefined}`,
  );
  if (!isLadingError(err, 'INVALID_LAYER') || tagged !== undefined) process.exitCode = 1;
}
await registry?.close();
