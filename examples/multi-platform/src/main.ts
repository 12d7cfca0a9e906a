// Scripted multi-platform assembly: one image per platform, each with its
// own payload layer over a shared base layer, pushed as one OCI index.
import {
  appendLayers,
  emptyImage,
  imageIndex,
  layerFromBytes,
  withConfig,
  withPlatform,
} from '@lading/core';
import { streamLayer } from '@lading/layers';
import { createRegistry, memoryStorage } from '@lading/registry';
import { pull, writeIndex } from '@lading/remote';
import { isImageIndex } from '@lading/core';
import { Readable } from 'node:stream';
import { pack } from 'tar-stream';

/** tarOf makes a one-file tar stream. */
function tarOf(name: string, content: string): Readable {
  const p = pack();
  p.entry({ name, mode: 0o755, mtime: new Date(0) }, content);
  p.finalize();
  return Readable.from(p);
}

const registry = createRegistry({ storage: memoryStorage() });
const { url } = await registry.listen({ host: '127.0.0.1', port: 0 });
const ref = `${new URL(url).host}/examples/multi:v1`;
try {
  const shared = layerFromBytes(Buffer.from('shared base layer content '.repeat(100)));
  const platforms = [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64', variant: 'v8' },
    { os: 'linux', architecture: 'riscv64' },
  ];
  const entries = platforms.map((platform) => {
    const binary = streamLayer(
      tarOf('app', `#!/bin/sh\necho built for ${platform.architecture}\n`),
    );
    const image = withConfig(withPlatform(appendLayers(emptyImage(), shared, binary), platform), {
      entrypoint: ['/app'],
    });
    return { image, platform };
  });
  const push = writeIndex(ref, imageIndex(entries));
  const result = await push.done;
  console.log(`pushed index ${result.digest} for ${platforms.length} platforms`);
  const back = await pull(ref);
  if (!isImageIndex(back)) throw new Error('expected an index');
  for (const m of (await back.indexManifest()).manifests) {
    console.log(
      `  ${m.platform?.os ?? '?'}/${m.platform?.architecture ?? '?'}${m.platform?.variant === undefined ? '' : `/${m.platform.variant}`} → ${m.digest}`,
    );
  }
} finally {
  await registry.close();
}
