import type { Descriptor, Image, ImageIndex } from '@lading/core';
import { ProgressEmitter } from '@lading/core';
import type { RemoteOptions } from '@lading/remote';
import { writeTo } from '../image-source.js';
import { flag, seconds } from './common.js';
import type { CommandContext } from './types.js';

/**
 * reportWrite writes an image or index to every destination (the first
 * fully, the others pointed at the same manifest) and prints the digest.
 */
export async function reportWrite(
  ctx: CommandContext,
  content: Image | ImageIndex,
  destinations: readonly string[],
  options: RemoteOptions,
  start: number,
): Promise<Descriptor> {
  const progress = new ProgressEmitter();
  progress.on('progress', ctx.out.progress);
  const { descriptor } = await writeTo(destinations, content, options, {
    progress,
    signal: ctx.signal,
    onAuthorized: () => {
      ctx.out.info(`authorized to push ${destinations[0] ?? ''} after ${seconds(start)} s`);
    },
  });
  ctx.out.result(
    {
      digest: descriptor.digest,
      size: descriptor.size,
      mediaType: descriptor.mediaType,
      destination: destinations[0],
      destinations,
      seconds: seconds(start),
    },
    flag(ctx, 'quiet')
      ? descriptor.digest
      : `${destinations.join('\n')}\n${descriptor.digest} (${seconds(start)} s)`,
  );
  return descriptor;
}
