import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, type Registry } from '@lading/registry';
import { Agent, request } from '../src/internal/transport/undici.js';

describe('undici, loaded from its own files', () => {
  let registry: Registry;
  let base: string;
  beforeAll(async () => {
    registry = createRegistry();
    const { port } = await registry.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await registry.close();
  });

  it('sends requests through Agent and request taken from undici’s own files', async () => {
    const agent = new Agent({ connections: 1 });
    try {
      const ping = await request(new URL(`${base}/v2/`), { method: 'GET', dispatcher: agent });
      expect(ping.statusCode).toBe(200);
      await ping.body.dump();
      // The query reaches the server: n=-1 is refused as a page size.
      const catalog = await request(new URL(`${base}/v2/_catalog?n=-1`), {
        method: 'GET',
        dispatcher: agent,
      });
      expect(catalog.statusCode).toBe(400);
      await catalog.body.dump();
      // Refused before any connection, as undici's index refuses it (it throws).
      await expect(
        (async () =>
          request(new URL('ftp://127.0.0.1/v2/'), { method: 'GET', dispatcher: agent }))(),
      ).rejects.toThrow(/protocol/i);
    } finally {
      await agent.close();
    }
  });

  it('importing @lading/remote does not load undici’s index', async () => {
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    const script = `
      import { createRequire } from 'node:module';
      await import(${JSON.stringify(dist)});
      const cache = Object.keys(createRequire(import.meta.url).cache);
      console.log(JSON.stringify({
        index: cache.filter((f) => /[\\\\/]undici[\\\\/]index\\.js$/.test(f)).length,
        agent: cache.filter((f) => /[\\\\/]undici[\\\\/]lib[\\\\/]dispatcher[\\\\/]agent\\.js$/.test(f)).length,
      }));
    `;
    const { stdout } = await promisify(execFile)(process.execPath, [
      '--input-type=module',
      '-e',
      script,
    ]);
    expect(JSON.parse(stdout)).toEqual({ index: 0, agent: 1 });
  });
});
