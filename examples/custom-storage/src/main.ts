// A registry over custom storage: blobs live on a second HTTP server (a
// stand-in for object storage with pre-signed URLs). Blob GETs are answered
// with 307 redirects, uploads go straight to the object server, and the
// client never sends its credentials there.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendLayers, emptyImage, layerFromBytes, validateImage } from '@lading/core';
import { createRegistry, httpObjectStorage } from '@lading/registry';
import { pullImage, write } from '@lading/remote';

const dir = await mkdtemp(join(tmpdir(), 'lading-objects-'));
const objects = httpObjectStorage({ dir });
const objectOrigin = await objects.start();
const registry = createRegistry({ storage: objects.storage });
const host = new URL((await registry.listen({ host: '127.0.0.1', port: 0 })).url).host;
try {
  const image = appendLayers(
    emptyImage(),
    layerFromBytes(Buffer.from('stored in the object store '.repeat(5000))),
  );
  const ref = `${host}/examples/objects:v1`;
  const pushed = await write(ref, image).done;
  const pulled = await pullImage(ref);
  await validateImage(pulled); // reads every layer: through the 307 redirect
  const seen = objects.requests;
  const gets = seen.filter((r) => r.method === 'GET').length;
  const withAuth = seen.filter((r) => r.authorization).length;
  console.log(`pushed ${pushed.digest}`);
  console.log(
    `object server ${objectOrigin}: ${seen.length} requests (${gets} blob GETs), ${withAuth} carried an Authorization header`,
  );
  if (gets === 0 || withAuth !== 0) process.exitCode = 1;
} finally {
  await registry.close();
  await objects.close();
  await rm(dir, { recursive: true, force: true });
}
