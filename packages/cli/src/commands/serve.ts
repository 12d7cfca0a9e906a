import { readFile } from 'node:fs/promises';
import {
  createRegistry,
  filesystemStorage,
  memoryStorage,
  type RegistryAuth,
} from '@lading/registry';
import { UsageError } from '../exit.js';
import { flag, str } from './common.js';
import { serveHardening, serveHardeningOptions, serveHardeningUsage } from './serve-options.js';
import type { Command } from './types.js';

const usage = `Usage: lading serve [--port N] [--host ADDR] [--storage DIR] [--htpasswd FILE [--token]]

Runs the embedded OCI registry until interrupted.

Options:
  --port N          port (default 5000; 0 picks a free one)
  --host ADDR       address to bind (default 127.0.0.1)
  --storage DIR     keep content in DIR (default: in memory)
  --htpasswd FILE   require basic auth against an htpasswd (bcrypt) file
  --token           with --htpasswd: issue bearer tokens from /token instead
  --anonymous-pull  with --token: allow pulls without credentials
${serveHardeningUsage}`;

/** serve is `lading serve`. */
export const serve: Command = {
  usage,
  options: {
    port: { type: 'string' },
    host: { type: 'string' },
    storage: { type: 'string' },
    htpasswd: { type: 'string' },
    token: { type: 'boolean' },
    'anonymous-pull': { type: 'boolean' },
    ...serveHardeningOptions,
  },
  run: async (ctx) => {
    const port = Number(str(ctx, 'port') ?? '5000');
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new UsageError(`--port wants 0-65535, got ${JSON.stringify(str(ctx, 'port'))}`);
    const htpasswdFile = str(ctx, 'htpasswd');
    if (flag(ctx, 'token') && htpasswdFile === undefined)
      throw new UsageError('--token needs --htpasswd for the users');
    const dir = str(ctx, 'storage');
    const host = str(ctx, 'host') ?? '127.0.0.1';
    const { options, grants, realm } = serveHardening(ctx, {
      memory: dir === undefined,
      token: flag(ctx, 'token'),
      host,
    });
    let auth: RegistryAuth = { type: 'none' };
    if (htpasswdFile !== undefined) {
      const htpasswd = await readFile(htpasswdFile, 'utf8');
      auth = flag(ctx, 'token')
        ? {
            type: 'token',
            users: htpasswd,
            anonymousPull: flag(ctx, 'anonymous-pull'),
            grants,
            realm,
          }
        : { type: 'basic', htpasswd, grants };
    } else if (grants !== undefined) throw new UsageError('--grants needs --htpasswd');
    const registry = createRegistry({
      ...options,
      storage: dir === undefined ? memoryStorage() : filesystemStorage(dir),
      auth,
    });
    const { url } = await registry.listen({ host, port });
    ctx.out.result(
      { url, storage: dir ?? 'memory', auth: auth.type },
      `lading registry listening on ${url} (${dir ?? 'memory'}, auth ${auth.type})`,
    );
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      else
        ctx.signal.addEventListener(
          'abort',
          () => {
            resolve();
          },
          { once: true },
        );
    });
    await registry.close();
    ctx.out.info('registry stopped');
  },
};
