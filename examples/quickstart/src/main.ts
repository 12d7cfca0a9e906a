// The README's main job: start the embedded registry, build an image from a
// directory, push it lazily, pull it back, unpack it and check it.
import { mkdtemp, readFile, readdir, readlink, rm, lstat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { appendLayers, emptyImage, withConfig, withCreated, validateImage } from '@lading/core';
import { extractVerified, layerFromDirectory } from '@lading/layers';
import { createRegistry, memoryStorage } from '@lading/registry';
import { pullImage, write } from '@lading/remote';

const here = dirname(fileURLToPath(import.meta.url));
const appDir = join(here, '..', 'app');
const ms = (t: number): string => `${(performance.now() - t).toFixed(0)} ms`;

async function tree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      const st = await lstat(p);
      const key = relative(dir, p);
      if (st.isSymbolicLink()) out.set(key, `link:${await readlink(p)}`);
      else if (st.isDirectory()) await walk(p);
      else
        out.set(key, `${(st.mode & 0o777).toString(8)}:${(await readFile(p)).toString('base64')}`);
    }
  };
  await walk(dir);
  return out;
}

const t0 = performance.now();
const registry = createRegistry({ storage: memoryStorage() });
const { url } = await registry.listen({ host: '127.0.0.1', port: 0 });
const ref = `${new URL(url).host}/examples/hello:v1`;
console.log(`registry   ${url} (${ms(t0)})`);

const tBuild = performance.now();
// Nothing is read here: the layer is a lazy stream over the directory.
const layer = layerFromDirectory(appDir, { prefix: '/app', sourceDateEpoch: 0 });
const image = withCreated(
  withConfig(appendLayers(emptyImage(), layer), {
    entrypoint: ['/app/run'],
    env: { GREETING: 'hello' },
  }),
  new Date(0),
);
const push = write(ref, image);
await push.authorized;
console.log(
  `authorized upload session open after ${ms(tBuild)}; layer digest still unknown: ${String(layer.knownDescriptor() === undefined)}`,
);
const pushed = await push.done;
console.log(
  `pushed     ${ref}\n           ${pushed.reference} (${pushed.size} B manifest, ${ms(tBuild)})`,
);

const tPull = performance.now();
const pulled = await pullImage(ref);
await validateImage(pulled);
const out = await mkdtemp(join(tmpdir(), 'lading-quickstart-'));
try {
  await extractVerified(await pulled.layers(), out);
  const want = await tree(appDir);
  const got = await tree(join(out, 'app'));
  const same = want.size === got.size && [...want].every(([k, v]) => got.get(k) === v);
  if (!same || (await pulled.digest()) !== pushed.digest) {
    console.error('FAILED: the pulled image does not match what was pushed');
    process.exitCode = 1;
  } else {
    console.log(
      `pulled     ${pushed.digest}: ${got.size} entries identical to ${relative(process.cwd(), appDir)} (${ms(tPull)})`,
    );
    console.log(`\nreference  ${ref}\ndigest     ${pushed.digest}\ntotal      ${ms(t0)}`);
  }
} finally {
  await rm(out, { recursive: true, force: true });
  await registry.close();
}
