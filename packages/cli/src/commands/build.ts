import {
  appendLayers,
  emptyImage,
  withAnnotations,
  withConfig,
  withCreated,
  withPlatform,
  parsePlatform,
  type ConfigPatch,
  type Image,
} from '@lading/core';
import { formatCreated } from '@lading/core/internal';
import { layerFromDirectory } from '@lading/layers';
import type { Stats } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, posix, relative } from 'node:path';
import { UsageError } from '../exit.js';
import { parseLocation } from '../transports.js';
import { openSource, pickImage } from '../image-source.js';
import { reportWrite } from './report-write.js';
import { keyValues, list, now, positional, remoteOptions, str } from './common.js';
import type { Command, CommandContext } from './types.js';

const configOptionsHelp = `  --entrypoint JSON|CMD     e.g. '["/app/run"]' or /app/run
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

const usage = `Usage: lading build [DIR] [--layer DIR[:DEST]]... (-t LOCATION)... [options]
       lading build DIR LOCATION [options]

Builds an image from directories, one layer each in the order given, on top
of --base, and writes it to every LOCATION: a registry reference,
oci:DIR[:TAG] or docker-archive:FILE[:TAG]. The first is written, the others
are pointed at the same manifest (a manifest PUT within one repository).
Registry pushes are lazy: upload sessions open before the layer is read, so
a permission problem fails at once.

Options:
  -t, --tag LOCATION        where to write the image, repeatable
  -d, --dest LOCATION       same as -t (or give it as 2nd argument)
  --layer DIR[:DEST]        a layer from DIR placed at DEST (default /), repeatable
  --base LOCATION           base image, any location (default: scratch)
  --prefix PATH             where the DIR argument lands (default /)
${configOptionsHelp}`;

const appendUsage = `Usage: lading append BASE LOCATION --layer DIR[:DEST]... [options]

Adds layers (one per --layer, in order) to the image at BASE (any location;
an index needs --platform) and writes the result to LOCATION (and every -t).
Base layers are not uploaded again: they are skipped or mounted when
LOCATION is in the same registry.

Options:
  -t, --tag LOCATION        another location to write, repeatable
  --layer DIR[:DEST]        a layer from DIR placed at DEST (default /), repeatable
${configOptionsHelp}`;

/** layerSpec splits `DIR[:DEST]`: DEST is what follows the last ':' when it is absolute. */
export function layerSpec(text: string): { dir: string; dest: string } {
  const i = text.lastIndexOf(':');
  if (i > 0 && text[i + 1] === '/')
    return { dir: text.slice(0, i), dest: destPath(text.slice(i + 1)) };
  return { dir: text, dest: '/' };
}

/**
 * destPath writes a layer's place in the image one way (`/x/`, `//x` and
 * `/x/.` are `/x`; `` and `.` are `/`), so that the same layer gives the
 * same history entry and so the same image digest. A `..` is kept for the
 * layer to refuse.
 */
function destPath(dest: string): string {
  if (dest.split('/').includes('..')) return dest;
  const p = posix.normalize(`/${dest}`);
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

async function isDirectory(path: string): Promise<boolean> {
  const st = await stat(path).catch(() => undefined);
  return st?.isDirectory() === true;
}

/** words reads a command as a JSON array or as space-separated words. */
export function words(value: string | undefined): string[] | undefined {
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
  fallback?: string,
): number | undefined {
  const v = str(ctx, name) ?? fallback;
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(
      `--${name} wants an integer from ${min} to ${max}, got ${JSON.stringify(v)}`,
    );
  return n;
}

function sourceDateEpoch(ctx: CommandContext): number {
  const fromEnv = process.env.SOURCE_DATE_EPOCH;
  const epochText = str(ctx, 'source-date-epoch') ?? (fromEnv === '' ? undefined : fromEnv) ?? '0';
  // Decimal digits only (Number() would take '', ' 5', '0x10' and '1e3'),
  // up to the last second of year 9999, which the config's RFC 3339
  // `created` can still write.
  const epoch = /^[0-9]{1,12}$/.test(epochText) ? Number(epochText) : Number.NaN;
  if (!(epoch <= maxEpoch))
    throw new UsageError(
      `source date epoch must be whole seconds from 0 to ${maxEpoch}, got ${JSON.stringify(epochText)}`,
    );
  return epoch;
}

/** maxEpoch is 9999-12-31T23:59:59Z. */
const maxEpoch = 253_402_300_799;

/** configPatch reads --env, --entrypoint, --cmd, --workdir, --user, --label and --expose. */
export function configPatch(ctx: CommandContext): ConfigPatch {
  const env = keyValues(list(ctx, 'env'), 'env');
  const entrypoint = words(str(ctx, 'entrypoint'));
  const cmd = words(str(ctx, 'cmd'));
  const workingDir = str(ctx, 'workdir');
  const user = str(ctx, 'user');
  const labels = keyValues(list(ctx, 'label'), 'label');
  const exposed = list(ctx, 'expose');
  return {
    ...(Object.keys(env).length > 0 ? { env } : {}),
    ...(entrypoint === undefined ? {} : { entrypoint }),
    ...(cmd === undefined ? {} : { cmd }),
    ...(workingDir === undefined ? {} : { workingDir }),
    ...(user === undefined ? {} : { user }),
    ...(Object.keys(labels).length > 0 ? { labels } : {}),
    ...(exposed.length > 0 ? { exposedPorts: exposed } : {}),
  };
}

// The real path of `path`, or of its nearest existing ancestor with the rest
// appended: a destination usually does not exist yet.
async function realish(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch {
    const parent = dirname(path);
    return parent === path ? path : join(await realish(parent), basename(path));
  }
}

// The top directory of `rel` (under root) that does not exist yet: writing
// the layout creates it, so it is left out with the layout, whenever the
// walk would reach it.
async function createdBelow(root: string, rel: string): Promise<string> {
  const parts = rel.split('/');
  for (let i = 1; i < parts.length; i++) {
    const top = parts.slice(0, i).join('/');
    if ((await stat(join(root, top)).catch(() => undefined)) === undefined) return top;
  }
  return rel;
}

/**
 * ownOutputs is the filter that keeps out of the layer of `dir` what this
 * command writes inside it, as GNU tar leaves out its own archive: an
 * `oci:` layout below DIR, a `docker-archive:` file and the temp file it is
 * written to beside it, and the directories created to hold a layout.
 * Packing them would pack half-written files, and the layer would not be
 * the same twice.
 * @throws UsageError when a layout would be written into DIR itself
 */
async function ownOutputs(
  dir: string,
  destinations: readonly string[],
): Promise<((path: string, stat: Stats) => boolean) | undefined> {
  const root = await realish(dir);
  const layouts: string[] = [];
  const archives: string[] = [];
  for (const d of destinations) {
    const loc = parseLocation(d);
    if (loc.kind === 'registry') continue;
    const rel = relative(root, await realish(loc.kind === 'oci' ? loc.dir : loc.file));
    if (rel.startsWith('..') || isAbsolute(rel)) continue;
    if (rel === '')
      throw new UsageError(
        `${d} would be written into ${dir}, the directory being built`,
        'write the layout elsewhere, or into a directory inside it',
      );
    if (loc.kind === 'docker-archive') archives.push(rel);
    else layouts.push(await createdBelow(root, rel));
  }
  if (layouts.length === 0 && archives.length === 0) return undefined;
  return (path) => {
    if (layouts.includes(path) || archives.includes(path)) return false;
    const name = posix.basename(path);
    const parent = posix.dirname(path);
    return !archives.some(
      (a) =>
        posix.dirname(a) === parent &&
        name.startsWith(`.${posix.basename(a)}.`) &&
        name.endsWith('.tmp'),
    );
  };
}

/** addLayers appends one layer per directory, then applies the config options. */
async function addLayers(
  ctx: CommandContext,
  base: Image,
  layers: readonly { dir: string; dest: string }[],
  command: string,
  destinations: readonly string[],
): Promise<Image> {
  const epoch = sourceDateEpoch(ctx);
  const [compression, levelText] = (str(ctx, 'compression') ?? 'gzip').split(':', 2);
  if (compression !== 'gzip' && compression !== 'zstd')
    throw new UsageError(`--compression wants gzip or zstd[:LEVEL], got ${String(compression)}`);
  // The range per compression is checked by the layer (INVALID_ARGUMENT).
  const level = intOption(ctx, 'level', 0, 22, levelText);
  const workers = intOption(ctx, 'workers', 1, 64);
  const created = formatCreated(epoch * 1000);
  let image = base;
  for (const { dir, dest } of layers) {
    if (!(await isDirectory(dir))) throw new UsageError(`${dir} is not a directory`);
    const filter = await ownOutputs(dir, destinations);
    const layer = layerFromDirectory(dir, {
      prefix: dest,
      ...(filter === undefined ? {} : { filter }),
      sourceDateEpoch: epoch,
      compression,
      ...(level === undefined ? {} : { level }),
      ...(workers === undefined ? {} : { workers }),
      signal: ctx.signal,
    });
    image = appendLayers(image, {
      layer,
      history: { created_by: `lading ${command} --layer :${dest}`, created },
    });
  }
  image = withConfig(image, configPatch(ctx));
  // The config's date and the new layers' history entries; a base's
  // history keeps its own dates.
  image = withCreated(image, new Date(epoch * 1000), { history: false });
  const annotations = keyValues(list(ctx, 'annotation'), 'annotation');
  if (Object.keys(annotations).length > 0) image = withAnnotations(image, annotations);
  return image;
}

async function run(ctx: CommandContext): Promise<void> {
  const start = now();
  const positionals = [...ctx.positionals];
  const layers = list(ctx, 'layer').map(layerSpec);
  // Without --layer, DIR comes first; with it, a first argument that is a
  // directory is still a layer (placed at --prefix), before the others.
  if (
    layers.length === 0 ||
    (positionals[0] !== undefined && (await isDirectory(positionals[0])))
  ) {
    const dir = positionals.shift();
    if (dir === undefined)
      throw new UsageError('missing DIR (or --layer DIR)', 'lading build --help');
    if (!(await isDirectory(dir))) throw new UsageError(`${dir} is not a directory`);
    layers.unshift({ dir, dest: destPath(str(ctx, 'prefix') ?? '/') });
  }
  const destinations = [...list(ctx, 'dest'), ...positionals, ...list(ctx, 'tag')];
  if (destinations.length === 0)
    throw new UsageError('missing destination', 'lading build DIR -t LOCATION');
  for (const d of destinations) parseLocation(d);
  sourceDateEpoch(ctx);
  const platform = parsePlatform(str(ctx, 'platform') ?? 'linux/amd64');
  const options = await remoteOptions(ctx);
  const baseText = str(ctx, 'base');
  const base =
    baseText === undefined || baseText === 'scratch'
      ? withPlatform(emptyImage(), platform)
      : await pickImage(
          (await openSource(baseText, options, ctx.signal)).content,
          str(ctx, 'platform') ?? 'linux/amd64',
        );
  const image = await addLayers(ctx, base, layers, 'build', destinations);
  await reportWrite(ctx, image, destinations, options, start);
}

async function runAppend(ctx: CommandContext): Promise<void> {
  const start = now();
  const baseText = positional(ctx, 0, 'BASE', appendUsage);
  const destinations = [...ctx.positionals.slice(1), ...list(ctx, 'tag')];
  if (destinations.length === 0)
    throw new UsageError('missing destination', 'lading append BASE LOCATION --layer DIR');
  const layers = list(ctx, 'layer').map(layerSpec);
  if (layers.length === 0) throw new UsageError('append needs at least one --layer DIR[:DEST]');
  for (const d of destinations) parseLocation(d);
  const options = await remoteOptions(ctx);
  const base = await pickImage(
    (await openSource(baseText, options, ctx.signal)).content,
    str(ctx, 'platform'),
  );
  const image = await addLayers(ctx, base, layers, 'append', destinations);
  await reportWrite(ctx, image, destinations, options, start);
}

const sharedOptions = {
  tag: { type: 'string', multiple: true, short: 't' },
  layer: { type: 'string', multiple: true },
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
} as const;

/** append is `lading append BASE LOCATION --layer DIR[:DEST]…`. */
export const append: Command = {
  usage: appendUsage,
  options: sharedOptions,
  run: runAppend,
};

/** build is `lading build`. */
export const build: Command = {
  usage,
  options: {
    ...sharedOptions,
    dest: { type: 'string', short: 'd', multiple: true },
    base: { type: 'string' },
    prefix: { type: 'string' },
  },
  run,
};
