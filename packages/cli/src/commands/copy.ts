import { existsSync } from 'node:fs';
import { ProgressEmitter, copy, isDigest } from '@lading/core';
import { OciLayout } from '@lading/layout';
import { RegistryTarget } from '@lading/remote';
import { UsageError } from '../exit.js';
import { parseLocation, type Location } from '../transports.js';
import {
  flag,
  now,
  openTarget,
  positional,
  pullForPlatform,
  remoteOptions,
  seconds,
  str,
  writing,
} from './common.js';
import { storedAs } from './report-write.js';
import type { Command, CommandContext } from './types.js';

const cpUsage = `Usage: lading cp SRC DST [--platform OS/ARCH] [--all]

Copies an image (or a whole index) between locations: registry references,
oci:DIR[:TAG] and docker-archive:FILE[:TAG]. Children are copied before
parents; blobs the destination has are skipped; within one registry they are
mounted. Re-running an interrupted copy finishes it.

Options:
  --platform OS/ARCH[/VARIANT]  copy one platform out of an index
  --all                         copy every platform (the default)
  -r, --referrers               copy the artifacts that refer to the image
                                (signatures, SBOMs; theirs too) as well
  --jobs N                      transfers in flight (default 4)
  --src-username U, --src-password P | --src-password-stdin
                                credentials for SRC only
  --dest-username U, --dest-password P | --dest-password-stdin
                                credentials for DST only
Without these, -u/-p apply to both sides, and otherwise the docker config
($DOCKER_CONFIG/config.json, credential helpers) is read per registry.`;

function jobsOf(ctx: CommandContext): number {
  const jobsText = str(ctx, 'jobs');
  const jobs = jobsText === undefined ? 4 : Number(jobsText);
  if (!Number.isInteger(jobs) || jobs < 1)
    throw new UsageError(`--jobs wants a positive integer, got ${JSON.stringify(jobsText)}`);
  return jobs;
}

async function copyBetween(ctx: CommandContext, srcText: string, dstText: string): Promise<void> {
  const start = now();
  const stdinUsers = ['src', 'dest', ''].filter((s) =>
    flag(ctx, s === '' ? 'password-stdin' : `${s}-password-stdin`),
  );
  if (stdinUsers.length > 1)
    throw new UsageError(
      'only one of --password-stdin, --src-password-stdin and --dest-password-stdin can read stdin',
    );
  const src = openTarget(parseLocation(srcText), await remoteOptions(ctx, 'src'), 'read');
  const dstLoc: Location = parseLocation(dstText);
  const dstOptions = await remoteOptions(ctx, 'dest');
  const dst = openTarget(dstLoc, dstOptions, 'write');
  // A tagless layout or archive source means its only image (skopeo's rule).
  const srcRef = src.readRef;
  const dstRef = dst.ref ?? (srcRef === '' ? 'latest' : srcRef);
  const platform = str(ctx, 'platform');
  if (platform !== undefined && flag(ctx, 'all'))
    throw new UsageError('--platform and --all exclude each other');
  const jobs = jobsOf(ctx);
  // The destination's ping (GET /v2/, which learns its auth challenge) goes
  // out now, beside the source's, not after the source's manifest: the
  // transport hands the same ping to its first request, which reports a
  // failure (a failed ping is forgotten and tried again).
  if (dst.target instanceof RegistryTarget)
    dst.target.client.ping({ signal: ctx.signal }).catch(() => undefined);
  // With --quiet or --json nothing is drawn: no emitter, so no counting
  // stage in every blob's path.
  const shown = ctx.out.mode === 'tty' || ctx.out.mode === 'plain';
  const progress = shown ? new ProgressEmitter() : undefined;
  progress?.on('progress', ctx.out.progress);
  const withReferrers = flag(ctx, 'referrers');
  if (withReferrers && dstLoc.kind === 'docker-archive')
    throw new UsageError('a docker archive cannot hold referrers: drop --referrers');
  let skipped = 0;
  let mounted = 0;
  let referrers = 0;
  const root = await writing(dst, async () => {
    const options = {
      signal: ctx.signal,
      concurrency: jobs,
      ...(progress === undefined ? {} : { progress }),
      onSkipped: () => {
        skipped++;
      },
      onMounted: () => {
        mounted++;
      },
    };
    const root = await copy(src.target, srcRef, dst.target, dstRef, {
      ...options,
      ...(platform === undefined ? {} : { platform }),
    });
    if (withReferrers) {
      // Loaded here: a plain cp does not need it.
      const { copyReferrers } = await import('./artifacts.js');
      referrers = await copyReferrers(src.target, dst.target, root, options);
    }
    // copy tags nothing for a digest: a layout DST that names no tag gets an
    // untagged index.json entry (as skopeo writes), or its image would be
    // unreachable (and gone at the next gc).
    if (dst.target instanceof OciLayout && dst.ref === undefined && isDigest(dstRef)) {
      const listed = await dst.target.list({ signal: ctx.signal });
      if (!listed.some((d) => d.digest === root.digest))
        await dst.target.tag(root, root.digest, { signal: ctx.signal });
    }
    return root;
  });
  const stored = await storedAs(dstText, root, dstOptions, ctx.signal);
  ctx.out.result(
    {
      source: srcText,
      destination: dstText,
      digest: stored.digest,
      mediaType: stored.mediaType,
      size: stored.size,
      skipped,
      mounted,
      ...(withReferrers ? { referrers } : {}),
      seconds: seconds(start),
    },
    flag(ctx, 'quiet')
      ? stored.digest
      : `${dstText}\n${stored.digest} (${seconds(start)} s, ${skipped} skipped, ${mounted} mounted${withReferrers ? `, ${referrers} referrers` : ''})`,
  );
}

const cpOptions = {
  platform: { type: 'string' },
  referrers: { type: 'boolean', short: 'r' },
  all: { type: 'boolean' },
  jobs: { type: 'string' },
  'src-username': { type: 'string' },
  'src-password': { type: 'string' },
  'src-password-stdin': { type: 'boolean' },
  'dest-username': { type: 'string' },
  'dest-password': { type: 'string' },
  'dest-password-stdin': { type: 'boolean' },
} as const;

/** cp is `lading cp SRC DST`. */
export const cp: Command = {
  positionals: 2,
  usage: cpUsage,
  options: cpOptions,
  run: (ctx) =>
    copyBetween(ctx, positional(ctx, 0, 'SRC', cpUsage), positional(ctx, 1, 'DST', cpUsage)),
};

const pushUsage = `Usage: lading push SRC REF

Pushes a local image (oci:DIR[:TAG] or docker-archive:FILE[:TAG]) to a
registry reference. Same options as lading cp.`;

/** push is `lading push SRC REF`. */
export const push: Command = {
  positionals: 2,
  usage: pushUsage,
  options: cpOptions,
  run: async (ctx) => {
    const src = positional(ctx, 0, 'SRC', pushUsage);
    const dst = positional(ctx, 1, 'REF', pushUsage);
    if (parseLocation(src).kind === 'registry')
      throw new UsageError(
        'push copies a local image; for registry to registry use lading cp',
        pushUsage,
      );
    if (parseLocation(dst).kind !== 'registry')
      throw new UsageError('push writes to a registry reference', pushUsage);
    await copyBetween(ctx, src, dst);
  },
};

const pullUsage = `Usage: lading pull REF DEST [--platform OS/ARCH] [--scoped] [--preserve-owners]

Pulls an image from a registry. DEST is oci:DIR[:TAG] or
docker-archive:FILE[:TAG] to keep the image, or a plain directory to unpack
its filesystem into (whiteouts applied, paths that escape refused).
--scoped unpacks as a container sees the tree: absolute names and symlinks
(such as var/run -> /run) are taken from DEST instead of refused.
Each layer is verified before it is unpacked, and a failed or interrupted
pull leaves DEST as it was: an absent or empty DEST gets nothing; in a
non-empty one, what the pull replaced or deleted is put back (it is moved
aside while the pull runs, into a hidden .lading-undo-* directory in DEST).
--preserve-owners (as root) restores the tar's owners and keeps
setuid/setgid bits, which are cleared otherwise. -r/--referrers (into
oci:DIR only) copies the image's referrers too, as lading cp -r does.`;

/**
 * looksLikeRegistry says whether a pull DEST reads as a registry reference:
 * a host with a port or `localhost` first, or a dotted host first and a tag
 * or digest last (`registry.example/app:v1`). `out.d/rootfs` does not.
 */
function looksLikeRegistry(dest: string): boolean {
  if (/^(?:localhost(?::[0-9]+)?|[a-zA-Z0-9.-]+:[0-9]+)\//.test(dest)) return true;
  return /^[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+\/[^:@]+(?::[\w][\w.-]*|@[a-z0-9]+:[a-f0-9]+)$/.test(
    dest,
  );
}

/** pull is `lading pull REF DEST`. */
export const pull: Command = {
  positionals: 2,
  usage: pullUsage,
  options: { ...cpOptions, scoped: { type: 'boolean' }, 'preserve-owners': { type: 'boolean' } },
  run: async (ctx) => {
    const ref = positional(ctx, 0, 'REF', pullUsage);
    const dest = positional(ctx, 1, 'DEST', pullUsage);
    if (parseLocation(ref).kind !== 'registry')
      throw new UsageError('pull reads from a registry reference', pullUsage);
    if (dest.startsWith('oci:') || dest.startsWith('docker-archive:')) {
      await copyBetween(ctx, ref, dest);
      return;
    }
    // `host:port/repo:tag` or `registry.example/repo` as DEST is a copy
    // meant for a registry, not a directory to create under that name.
    if (looksLikeRegistry(dest) && !existsSync(dest.slice(0, dest.indexOf('/'))))
      throw new UsageError(
        `pull unpacks into a directory; ${JSON.stringify(dest)} looks like a registry reference`,
        'lading cp REF DEST copies to a registry (./DEST for a directory of that name)',
      );
    if (flag(ctx, 'referrers'))
      throw new UsageError(
        '--referrers keeps artifacts: pull into oci:DIR to keep them',
        pullUsage,
      );
    const start = now();
    const options = await remoteOptions(ctx);
    const image = await pullForPlatform(ref, options, str(ctx, 'platform'));
    // Loaded here: cp and push never unpack, and @lading/layers (tar,
    // gzip workers) is a tenth of what they would load.
    const { extractVerified } = await import('@lading/layers');
    // Each layer is verified (digest, size, diffId) before a byte of it
    // lands in DEST; a failed pull leaves an absent or empty DEST as it was.
    await extractVerified(await image.layers(), dest, {
      signal: ctx.signal,
      scoped: flag(ctx, 'scoped'),
      chown: flag(ctx, 'preserve-owners'),
      concurrency: jobsOf(ctx),
    });
    const digest = await image.digest();
    ctx.out.result(
      { reference: ref, digest, directory: dest, seconds: seconds(start) },
      flag(ctx, 'quiet') ? digest : `${dest}\n${digest} (${seconds(start)} s)`,
    );
  },
};
