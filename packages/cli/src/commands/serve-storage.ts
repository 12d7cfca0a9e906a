import { stat } from 'node:fs/promises';
import { filesystemStorage, memoryStorage, type RegistryStorage } from '@lading/registry';
import { UsageError } from '../exit.js';
import { flag, str } from './common.js';
import type { CommandContext } from './types.js';

/** ServeStorage is the storage `lading serve` runs on, with a label for its banner. */
export interface ServeStorage {
  readonly storage: RegistryStorage;
  readonly label: string;
  close(): void;
}

/**
 * serveStorage opens `--storage`: absent → memory, `s3://BUCKET[/PREFIX]` →
 * S3 (endpoint from `--s3-endpoint`, `AWS_ENDPOINT_URL_S3` or
 * `AWS_ENDPOINT_URL`; keys and region from the usual `AWS_*` variables),
 * anything else → a directory. The S3 SDK is only loaded for S3.
 */
export async function serveStorage(ctx: CommandContext): Promise<ServeStorage> {
  const spec = str(ctx, 'storage');
  if (spec === undefined)
    return { storage: memoryStorage(), label: 'memory', close: () => undefined };
  if (!spec.startsWith('s3://')) {
    const st = await stat(spec).catch(() => undefined);
    if (st !== undefined && !st.isDirectory())
      throw new UsageError(
        `--storage ${spec}: not a directory`,
        'give a directory, or s3://BUCKET',
      );
    return { storage: filesystemStorage(spec), label: spec, close: () => undefined };
  }
  const [bucket = '', ...rest] = spec.slice('s3://'.length).split('/');
  if (bucket === '') throw new UsageError(`--storage wants s3://BUCKET[/PREFIX], got ${spec}`);
  const prefix = rest.filter((p) => p !== '').join('/');
  const env = process.env;
  const endpoint = str(ctx, 's3-endpoint') ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  const { s3Storage } = await import('@lading/registry/s3');
  const storage = s3Storage({
    bucket,
    prefix,
    endpoint: endpoint === '' ? undefined : endpoint,
    forcePathStyle: flag(ctx, 's3-path-style') || undefined,
  });
  return {
    storage,
    label: spec,
    close: () => {
      storage.close();
    },
  };
}
