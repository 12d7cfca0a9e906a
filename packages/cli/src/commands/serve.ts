import { readFile } from 'node:fs/promises';
import { createRegistry, type RegistryAuth } from '@lading/registry';
import { UsageError } from '../exit.js';
import { flag, str } from './common.js';
import {
  optionFileError,
  serveHardening,
  serveHardeningOptions,
  serveHardeningUsage,
} from './serve-options.js';
import { serveStorage } from './serve-storage.js';
import type { Command } from './types.js';

const usage = `Usage: lading serve [--port N] [--host ADDR] [--storage DIR] [--htpasswd FILE [--token]]

Runs the embedded OCI registry until interrupted.

Options:
  --port N          port (default 5000; 0 picks a free one)
  --host ADDR       address to bind (default 127.0.0.1)
  --storage DIR     keep content in DIR (default: in memory)
  --storage s3://BUCKET[/PREFIX]
                    keep content in an S3 bucket (keys, region, endpoint from
                    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
                    AWS_ENDPOINT_URL); any number of servers may share it
  --s3-endpoint URL an S3-compatible endpoint (overrides AWS_ENDPOINT_URL)
  --s3-path-style   address BUCKET as a path (most S3-compatible stores)
  --htpasswd FILE   require basic auth against an htpasswd (bcrypt) file
  --token           with --htpasswd: issue bearer tokens from /token instead
  --anonymous-pull  with --token: allow pulls without credentials
${serveHardeningUsage}`;

/** serve is `lading serve`. */
export const serve: Command = {
  positionals: 0,
  usage,
  options: {
    port: { type: 'string' },
    host: { type: 'string' },
    storage: { type: 'string' },
    htpasswd: { type: 'string' },
    token: { type: 'boolean' },
    'anonymous-pull': { type: 'boolean' },
    's3-endpoint': { type: 'string' },
    's3-path-style': { type: 'boolean' },
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
      const htpasswd = await readFile(htpasswdFile, { encoding: 'utf8', signal: ctx.signal }).catch(
        (err: unknown) => {
          throw optionFileError('htpasswd', htpasswdFile, err);
        },
      );
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
    const store = await serveStorage(ctx);
    const registry = createRegistry({ ...options, storage: store.storage, auth });
    const { url } = await registry.listen({ host, port });
    ctx.out.result(
      { url, storage: store.label, auth: auth.type },
      `lading registry listening on ${url} (${store.label}, auth ${auth.type})`,
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
    store.close();
    ctx.out.info('registry stopped');
  },
};
