// Child process: runs @lading/registry on 127.0.0.1 so that its CPU and
// memory are not the client's. Prints `READY <url>`; when its stdin closes it
// prints `RSS <peak KiB>`, removes its storage and exits.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { createRegistry, filesystemStorage, memoryStorage } from '@lading/registry';
import type { RegistryAuth } from '@lading/registry';

interface ServeOptions {
  readonly storage: 'memory' | 'filesystem';
  readonly auth?: { readonly type: 'basic' | 'token'; username: string; password: string };
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as ServeOptions;
  const dir =
    options.storage === 'memory'
      ? undefined
      : await mkdtemp(join(tmpdir(), 'lading-bench-registry-'));
  const removeStorage = async (): Promise<void> => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  };
  // Ctrl-C reaches the whole process group, this child too: its storage
  // goes with it rather than staying behind in the temp dir.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      void removeStorage().finally(() => process.exit(1));
    });
  }
  let auth: RegistryAuth = { type: 'none' };
  if (options.auth !== undefined) {
    const line = `${options.auth.username}:${bcrypt.hashSync(options.auth.password, 4)}\n`;
    auth =
      options.auth.type === 'basic'
        ? { type: 'basic', htpasswd: line }
        : { type: 'token', users: line };
  }
  const registry = createRegistry({
    storage: dir === undefined ? memoryStorage() : filesystemStorage(dir),
    auth,
  });
  const { url } = await registry.listen({ host: '127.0.0.1', port: 0 });
  process.stdout.write(`READY ${url}\n`);
  process.stdin.resume();
  process.stdin.once('end', () => {
    process.stdout.write(`RSS ${process.resourceUsage().maxRSS}\n`);
    void (async () => {
      try {
        await registry.close();
      } finally {
        await removeStorage();
      }
      process.exit(0);
    })();
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
