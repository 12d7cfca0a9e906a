// One copy() between any two targets: registry → OCI layout → docker archive
// → memory → another registry, keeping the image's identity on the way.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  appendLayers,
  copy,
  emptyImage,
  layerFromBytes,
  memoryTarget,
  withConfig,
} from '@lading/core';
import { dockerArchive, ociLayout } from '@lading/layout';
import { createRegistry, memoryStorage } from '@lading/registry';
import { registryTarget, write } from '@lading/remote';

const registry = createRegistry({ storage: memoryStorage() });
const host = new URL((await registry.listen({ host: '127.0.0.1', port: 0 })).url).host;
const dir = await mkdtemp(join(tmpdir(), 'lading-copy-'));
try {
  const image = withConfig(
    appendLayers(emptyImage(), layerFromBytes(Buffer.from('payload '.repeat(1000)))),
    { cmd: ['/bin/true'] },
  );
  const pushed = await write(`${host}/examples/source:v1`, image).done;
  console.log(`registry      ${pushed.digest}`);

  const layout = ociLayout(join(dir, 'layout'));
  const inLayout = await copy(registryTarget(`${host}/examples/source`), 'v1', layout, 'v1');
  console.log(`oci layout    ${inLayout.digest}`);

  const archiveFile = join(dir, 'image.tar');
  const writer = dockerArchive(archiveFile, { mode: 'write' });
  await copy(layout, 'v1', writer, 'examples/source:v1');
  await writer.close();
  const reader = dockerArchive(archiveFile);
  const inArchive = await reader.resolve('examples/source:v1');
  // docker save stores layers uncompressed: the manifest differs, the diffIds do not.
  console.log(`docker archive ${inArchive.digest} (docker-save form, uncompressed layers)`);

  const memory = memoryTarget();
  await copy(reader, 'examples/source:v1', memory, 'v1');
  const back = await copy(memory, 'v1', registryTarget(`${host}/examples/roundtrip`), 'v1');
  console.log(`back in registry ${back.digest}`);
} finally {
  await rm(dir, { recursive: true, force: true });
  await registry.close();
}
