import type { Descriptor, Image, ImageIndex } from '@lading/core';
import { ProgressEmitter } from '@lading/core';
import type { RemoteOptions } from '@lading/remote';
import { writeTo } from '../image-source.js';
import { parseLocation } from '../transports.js';
import { flag, openTarget, seconds } from './common.js';
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
  const stored = new Map<string, Descriptor>();
  for (const text of destinations)
    stored.set(text, await storedAs(text, descriptor, options, ctx.signal));
  // The digest printed is the manifest's as written to a registry or
  // layout; where every destination is an archive, the first archive's.
  const archivesOnly = destinations.every((d) => parseLocation(d).kind === 'docker-archive');
  const first = (archivesOnly ? stored.get(destinations[0] ?? '') : undefined) ?? descriptor;
  const own = (d: string): Descriptor => stored.get(d) ?? descriptor;
  ctx.out.result(
    {
      digest: first.digest,
      size: first.size,
      mediaType: first.mediaType,
      destination: destinations[0],
      destinations,
      digests: Object.fromEntries(destinations.map((d) => [d, own(d).digest])),
      seconds: seconds(start),
    },
    flag(ctx, 'quiet')
      ? first.digest
      : `${destinations
          .map((d) => (own(d).digest === descriptor.digest ? d : `${d}  ${own(d).digest}`))
          .join('\n')}\n${first.digest} (${seconds(start)} s)`,
  );
  return first;
}

/**
 * storedAs answers the manifest `location` holds after `written` was
 * written to it: `written` itself, except in a docker archive, which stores
 * its layers uncompressed (what `docker load` checks) and so a manifest of
 * its own — the digest `lading digest docker-archive:…` prints.
 */
export async function storedAs(
  location: string,
  written: Descriptor,
  options: RemoteOptions,
  signal: AbortSignal,
): Promise<Descriptor> {
  const parsed = parseLocation(location);
  if (parsed.kind !== 'docker-archive') return written;
  const opened = openTarget(parsed, options, 'read');
  return opened.target.resolve(opened.readRef, { signal });
}
