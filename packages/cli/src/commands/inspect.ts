import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  ErrorCode,
  LadingError,
  MAX_MANIFEST_SIZE,
  MediaType,
  parseConfigFile,
  isIndexMediaType,
  parseManifest,
  readCapped,
  selectPlatform,
  type Descriptor,
} from '@lading/core';
import { DockerArchive, OciLayout } from '@lading/layout';
import { RegistryClient } from '@lading/remote';
import { UsageError, sanitize } from '../exit.js';
import { parseLocation } from '../transports.js';
import {
  openTarget,
  parseRef,
  positional,
  remoteOptions,
  str,
  type OpenedTarget,
} from './common.js';
import type { Command, CommandContext } from './types.js';

/**
 * root resolves LOCATION; `fetchNext` when its manifest is read next (a
 * registry then answers both with one GET by tag, not a HEAD and a GET).
 */
async function root(
  ctx: CommandContext,
  usage: string,
  fetchNext: boolean,
): Promise<{ opened: OpenedTarget; desc: Descriptor }> {
  const text = positional(ctx, 0, 'LOCATION', usage);
  const opened = openTarget(parseLocation(text), await remoteOptions(ctx), 'read');
  const desc = await opened.target.resolve(opened.readRef, { signal: ctx.signal, fetchNext });
  return { opened, desc };
}

async function readManifest(
  opened: OpenedTarget,
  desc: Descriptor,
  signal: AbortSignal,
): Promise<Buffer> {
  return readCapped(await opened.target.fetch(desc, { signal }), MAX_MANIFEST_SIZE, signal);
}

const platformOption = { platform: { type: 'string' } } as const;

const digestUsage =
  'Usage: lading digest LOCATION [--platform OS/ARCH]\n\nPrints the digest of the manifest LOCATION points at; with --platform, of the matching image manifest.';
/** digest is `lading digest`. */
export const digest: Command = {
  positionals: 1,
  usage: digestUsage,
  options: platformOption,
  run: async (ctx) => {
    const platform = str(ctx, 'platform');
    // Without a platform a HEAD answers (registries count a GET as a pull).
    const r = await root(ctx, digestUsage, platform !== undefined);
    const desc =
      platform === undefined
        ? r.desc
        : await selectPlatform(r.desc, platform, (d) => readManifest(r.opened, d, ctx.signal));
    ctx.out.result(desc, desc.digest);
  },
};

const manifestUsage =
  'Usage: lading manifest LOCATION [--platform OS/ARCH]\n\nPrints the manifest (or index) as stored; with --platform, the matching image manifest of an index.';

/**
 * platformManifest follows `desc` to the manifest for `platform` (an index
 * child, or a single image checked against its config); without one, an
 * index is followed to `fallback` when given, else returned as it is.
 * @throws NOT_FOUND naming the platforms offered
 */
async function platformManifest(
  ctx: CommandContext,
  opened: OpenedTarget,
  desc: Descriptor,
  platform: string | undefined,
  fallback?: string,
): Promise<{ desc: Descriptor; bytes: Buffer }> {
  const load = (d: Descriptor): Promise<Buffer> => readManifest(opened, d, ctx.signal);
  const want = platform ?? (isIndexMediaType(desc.mediaType) ? fallback : undefined);
  const chosen = want === undefined ? desc : await selectPlatform(desc, want, load);
  return { desc: chosen, bytes: await load(chosen) };
}

/** manifest is `lading manifest`. */
export const manifest: Command = {
  positionals: 1,
  usage: manifestUsage,
  options: platformOption,
  run: async (ctx) => {
    const r = await root(ctx, manifestUsage, true);
    const { bytes } = await platformManifest(ctx, r.opened, r.desc, str(ctx, 'platform'));
    const value = JSON.parse(bytes.toString('utf8')) as unknown;
    ctx.out.result(value, JSON.stringify(value, null, 2));
  },
};

const configUsage =
  'Usage: lading config LOCATION [--platform OS/ARCH]\n\nPrints the image config (an index needs --platform; default linux/amd64).';
/** config is `lading config`. */
export const config: Command = {
  positionals: 1,
  usage: configUsage,
  options: platformOption,
  run: async (ctx) => {
    const r = await root(ctx, configUsage, true);
    const { desc, bytes } = await platformManifest(
      ctx,
      r.opened,
      r.desc,
      str(ctx, 'platform'),
      'linux/amd64',
    );
    const parsed = parseManifest(bytes, desc.mediaType);
    if (parsed.kind !== 'image')
      throw new LadingError(
        ErrorCode.UnsupportedMediaType,
        `${desc.digest} is not an image manifest`,
      );
    const raw = await readCapped(
      await r.opened.target.fetch(parsed.manifest.config, { signal: ctx.signal }),
      MAX_MANIFEST_SIZE,
      ctx.signal,
    );
    const type = parsed.manifest.config.mediaType;
    if (type !== MediaType.OciConfig && type !== MediaType.DockerConfig) {
      // An artifact's config (the empty `{}`, or its own JSON): printed as
      // stored, not checked as an image config.
      const text = raw.toString('utf8');
      let value: unknown = text;
      try {
        value = JSON.parse(text) as unknown;
      } catch {
        // not JSON: printed as text
      }
      ctx.out.result(value, typeof value === 'string' ? text : JSON.stringify(value, null, 2));
      return;
    }
    const value = parseConfigFile(raw);
    ctx.out.result(value, JSON.stringify(value, null, 2));
  },
};

const lsUsage =
  'Usage: lading ls REPOSITORY\n\nLists the tags of a registry repository (host/name, or docker://host/name), of\nan oci:DIR layout, or the names in a docker-archive:FILE. It takes no tag or digest.';
/** ls is `lading ls`. */
export const ls: Command = {
  positionals: 1,
  usage: lsUsage,
  options: {},
  run: async (ctx) => {
    const text = positional(ctx, 0, 'REPOSITORY', lsUsage);
    const location = parseLocation(text);
    if (location.kind !== 'registry') {
      if (location.tag !== undefined)
        throw new UsageError(`ls lists a whole ${location.kind}: drop the tag`, lsUsage);
      const opened = openTarget(location, await remoteOptions(ctx), 'read');
      const t = opened.target;
      let names: string[] = [];
      if (t instanceof OciLayout && location.kind === 'oci') {
        const entries = await t.list({ signal: ctx.signal });
        // A missing layout lists as an empty index: resolving in it throws
        // the NOT_FOUND "no OCI layout at DIR" that digest and the others give.
        if (entries.length === 0 && !existsSync(join(location.dir, 'index.json')))
          await t.resolve('', { signal: ctx.signal });
        names = await t.tags({ signal: ctx.signal });
      } else if (t instanceof DockerArchive)
        names = (await t.images({ signal: ctx.signal })).flatMap((i) => i.repoTags);
      ctx.out.result({ location: text, tags: names }, names.map((n) => sanitize(n)).join('\n'));
      return;
    }
    // parseRef defaults the tag to latest: look at the text. A ':' after the
    // last '/' is a tag (one before it, a port); an '@' a digest.
    const last = location.reference.slice(location.reference.lastIndexOf('/') + 1);
    if (last.includes(':') || last.includes('@'))
      throw new UsageError(
        `ls lists a whole repository: drop the ${last.includes('@') ? 'digest' : 'tag'}`,
        lsUsage,
      );
    const ref = parseRef(location.reference);
    const slash = ref.repo.indexOf('/');
    const client = new RegistryClient(ref.repo.slice(0, slash), await remoteOptions(ctx));
    const tags = await client.listTags(ref.repo.slice(slash + 1), { signal: ctx.signal });
    ctx.out.result({ repository: ref.repo, tags }, tags.map((t) => sanitize(t)).join('\n'));
  },
};

const catalogUsage =
  'Usage: lading catalog REGISTRY\n\nLists the repositories of a registry (host[:port]).';
/** catalog is `lading catalog`. */
export const catalog: Command = {
  positionals: 1,
  usage: catalogUsage,
  options: {},
  run: async (ctx) => {
    const host = positional(ctx, 0, 'REGISTRY', catalogUsage);
    if (host.includes('/'))
      throw new UsageError(
        `catalog wants a registry host, got ${JSON.stringify(host)}`,
        catalogUsage,
      );
    const client = new RegistryClient(host, await remoteOptions(ctx));
    const repositories = await client.catalog({ signal: ctx.signal });
    ctx.out.result(
      { registry: host, repositories },
      repositories.map((r) => sanitize(r)).join('\n'),
    );
  },
};
