import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import { createRegistry, memoryStorage, type RegistryStorage } from '../src/index.js';
import { sha256, sleep } from './helpers.js';

describe('Registry.close', () => {
  it('waits for the storage work of a request under way, so nothing is written after it', async () => {
    const storage = memoryStorage();
    const log: string[] = [];
    // A storage call that takes 300 ms: the request is inside it when close() is called.
    const slow: RegistryStorage = {
      ...storage,
      metadata: {
        ...storage.metadata,
        hasBlob: async (repository, digest, options) => {
          log.push('storage started');
          await sleep(300);
          log.push('storage done');
          return storage.metadata.hasBlob(repository, digest, options);
        },
      },
    };
    const registry = createRegistry({ storage: slow });
    const { url } = await registry.listen();
    const u = new URL(`${url}/v2/team/app/blobs/${sha256('x')}`);
    const req = request({ method: 'HEAD', host: u.hostname, port: u.port, path: u.pathname });
    req.on('error', () => undefined);
    req.end();
    while (!log.includes('storage started')) await sleep(10);
    await registry.close();
    log.push('closed');
    expect(log).toEqual(['storage started', 'storage done', 'closed']);
  });
});
