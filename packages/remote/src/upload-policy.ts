import type { UploadMode } from './upload.js';

/** MONOLITHIC_MAX is the largest known-size blob uploaded in one PUT when no mode is asked for. */
export const MONOLITHIC_MAX = 1024 * 1024;

/**
 * uploadMode is the one upload policy of every push (write(), index
 * children, the registry target): the asked `mode` when it can be honoured,
 * else one PUT for a blob whose size is known and at most 1 MiB (one round
 * trip less), else a stream. A blob of unknown size cannot go monolithic.
 */
export function uploadMode(
  mode: UploadMode | undefined,
  known: { readonly size: number } | undefined,
): UploadMode {
  const chosen =
    mode ?? (known !== undefined && known.size <= MONOLITHIC_MAX ? 'monolithic' : 'stream');
  return chosen === 'monolithic' && known === undefined ? 'stream' : chosen;
}
