import {
  appendLayers,
  emptyImage,
  withAnnotations,
  withConfig,
  withCreated,
  withPlatform,
  writeImage,
  ProgressEmitter,
  parsePlatform,
  type Image,
} from '@lading/core';
import { layerFromDirectory } from '@lading/layers';
import { write } from '@lading/remote';
import { stat } from 'node:fs/promises';
import { UsageError } from '../exit.js';
import { parseLocation } from '../transports.js';
import {
  flag,
  keyValues,
  list,
  openTarget,
  positional,
  pullForPlatform,
  remoteOptions,
  requireRef,
  seconds,
  str,
} from './common.js';
import type { Command, CommandContext } from './types.js';

const usage = `Usage: lading build DIR --dest LOCATION [options]

Builds an image from DIR (one layer, placed at --prefix) on top of --base and
writes it to LOCATION: a registry reference, oci:DIR[:TAG] or
docker-archive:FILE[:TAG]. Registry pushes are lazy: upload sessions open
before the layer is read, so a permission problem fails at once.

Options:
  -d, --dest LOCATION       where to write the image (or give it as 2nd argument)
  --base REF                base image in a registry (default: scratch)
  --prefix PATH             where DIR lands in the image (default /)
  --entrypoint JSON|CMD     e.g. '["/app/run"]' or /app/run
  --cmd JSON|CMD
  --env K=V                 repeatable
  --label K=V               repeatable
  --annotation K=V          manifest annotation, repeatable
  --workdir PATH, --user USER, --expose PORT[/proto] (repeatable)
  --platform OS/ARCH[/VARIANT]   (default linux/amd64; also picks the base)
  --compression gzip|zstd[:LEVEL]   layer compression (default gzip; zstd
                            needs Node ≥ 22.15)
  --level N                 compression level (default gzip 1, zstd 3)
  --workers N               compression worker threads (default: every core)
  --source-date-epoch N     timestamp for files and config (default
                            $SOURCE_DATE_EPOCH, else 0: reproducible)`;

function words(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const t = value.trim();
  if (t.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(t);
    } catch {
      throw new UsageError(`not a JSON array: ${value}`);
    }
    if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) {
      throw new UsageError(`want a JSON array of strings: ${value}`);
    }
    return parsed;
  }
  return t === '' ? [] : t.split(/\s+/);
}

function intOption(
  ctx: CommandContext,
  name: string,
  min: number,
  max: number,
  text = str(ctx, name),
): number | undefined {
  const v = text;
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(
      `--${name} wants an integer from ${min} to ${max}, got ${JSON.stringify(v)}`,
    );
  return n;
}

async function run(ctx: CommandContext): Promise<void> {
  const start = performance.now();
  const dir = positional(ctx, 0, 'DIR', usage);
  const destText = str(ctx, 'dest') ?? ctx.positionals[1];
  if (destText === undefined)
    throw new UsageError('missing destination', 'lading build DIR --dest LOCATION');
  const dest = parseLocation(destText);
  const st = await stat(dir).catch(() => undefined);
  if (st?.isDirectory() !== true) throw new UsageError(`${dir} is not a directory`);

  const epochText = str(ctx, 'source-date-epoch') ?? process.env.SOURCE_DATE_EPOCH ?? '0';
  const epoch = Number(epochText);
  if (!Number.isInteger(epoch) || epoch < 0)
    throw new UsageError(
      `source date epoch must be a non-negative integer, got ${JSON.stringify(epochText)}`,
    );
  const platformText = str(ctx, 'platform');
  const platform = parsePlatform(platformText ?? 'linux/amd64');
  const [compression, levelText] = (str(ctx, 'compression') ?? 'gzip').split(':', 2);
  if (compression !== 'gzip' && compression !== 'zstd')
    throw new UsageError(`--compression wants gzip or zstd[:LEVEL], got ${String(compression)}`);
  // The range per compression is checked by the layer (INVALID_ARGUMENT).
  const level = intOption(ctx, 'level', 0, 22, levelText);
  const workers = intOption(ctx, 'workers', 1, 64);
  const options = await remoteOptions(ctx);

  const baseRef = str(ctx, 'base');
  let image: Image =
    baseRef === undefined || baseRef === 'scratch'
      ? withPlatform(emptyImage(), platform)
      : await pullForPlatform(baseRef, options, platformText);
  const layer = layerFromDirectory(dir, {
    prefix: str(ctx, 'prefix') ?? '/',
    sourceDateEpoch: epoch,
    compression,
    ...(level === undefined ? {} : { level }),
    ...(workers === undefined ? {} : { workers }),
    signal: ctx.signal,
  });
  image = appendLayers(image, { layer, history: { created_by: 'lading build' } });
  const env = keyValues(list(ctx, 'env'), 'env');
  const entrypoint = words(str(ctx, 'entrypoint'));
  const cmd = words(str(ctx, 'cmd'));
  const workingDir = str(ctx, 'workdir');
  const user = str(ctx, 'user');
  const labels = keyValues(list(ctx, 'label'), 'label');
  const exposed = list(ctx, 'expose');
  image = withConfig(image, {
    ...(Object.keys(env).length > 0 ? { env } : {}),
    ...(entrypoint === undefined ? {} : { entrypoint }),
    ...(cmd === undefined ? {} : { cmd }),
    ...(workingDir === undefined ? {} : { workingDir }),
    ...(user === undefined ? {} : { user }),
    ...(Object.keys(labels).length > 0 ? { labels } : {}),
    ...(exposed.length > 0 ? { exposedPorts: exposed } : {}),
  });
  image = withCreated(image, new Date(epoch * 1000));
  const annotations = keyValues(list(ctx, 'annotation'), 'annotation');
  if (Object.keys(annotations).length > 0) image = withAnnotations(image, annotations);

  if (dest.kind === 'registry') {
    const push = write(dest.reference, image, options);
    push.on('progress', ctx.out.progress);
    await push.authorized;
    ctx.out.info(`authorized to push ${dest.reference} after ${seconds(start)} s`);
    const result = await push.done;
    const tagged = dest.reference.includes('@')
      ? dest.reference
      : `${dest.reference.replace(/:[^:/]+$/, '')}@${result.digest}`;
    ctx.out.result(
      { ...result, destination: dest.reference, seconds: seconds(start) },
      flag(ctx, 'quiet')
        ? result.digest
        : `${dest.reference}\n${tagged}\n${result.digest} (${seconds(start)} s)`,
    );
    return;
  }
  const opened = openTarget(dest, options, 'write');
  const ref = requireRef(opened);
  const progress = new ProgressEmitter();
  progress.on('progress', ctx.out.progress);
  const desc = await writeImage(opened.target, ref, image, { signal: ctx.signal, progress });
  await opened.finish();
  ctx.out.result(
    {
      digest: desc.digest,
      size: desc.size,
      mediaType: desc.mediaType,
      destination: destText,
      seconds: seconds(start),
    },
    flag(ctx, 'quiet') ? desc.digest : `${destText}\n${desc.digest} (${seconds(start)} s)`,
  );
}

/** build is `lading build`. */
export const build: Command = {
  usage,
  options: {
    dest: { type: 'string', short: 'd' },
    base: { type: 'string' },
    prefix: { type: 'string' },
    entrypoint: { type: 'string' },
    cmd: { type: 'string' },
    env: { type: 'string', multiple: true, short: 'e' },
    label: { type: 'string', multiple: true, short: 'l' },
    annotation: { type: 'string', multiple: true },
    workdir: { type: 'string' },
    user: { type: 'string' },
    expose: { type: 'string', multiple: true },
    platform: { type: 'string' },
    compression: { type: 'string' },
    level: { type: 'string' },
    workers: { type: 'string' },
    'source-date-epoch': { type: 'string' },
  },
  run,
};
