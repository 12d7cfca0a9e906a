import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import {
  ErrorCode,
  LadingError,
  isImageIndex,
  parseReference,
  type Image,
  type Target,
} from '@lading/core';
import { dockerArchive, ociLayout, type DockerArchive } from '@lading/layout';
import { pull, pullImage, registryTarget, type RemoteOptions } from '@lading/remote';
import { UsageError } from '../exit.js';
import type { Location } from '../transports.js';
import type { CommandContext } from './types.js';

/** str reads a string option. */
export function str(ctx: CommandContext, name: string): string | undefined {
  const v = ctx.values[name];
  return typeof v === 'string' ? v : undefined;
}

/** list reads a repeatable string option. */
export function list(ctx: CommandContext, name: string): string[] {
  const v = ctx.values[name];
  if (v === undefined || typeof v === 'boolean') return [];
  return Array.isArray(v) ? v : [v];
}

/** flag reads a boolean option. */
export function flag(ctx: CommandContext, name: string): boolean {
  return ctx.values[name] === true;
}

/** positional returns the i-th positional argument or a usage error naming it. */
export function positional(ctx: CommandContext, i: number, what: string, usage: string): string {
  const v = ctx.positionals[i];
  if (v === undefined || v === '') throw new UsageError(`missing ${what}`, usage);
  return v;
}

/** keyValues parses repeated K=V options into a record. */
export function keyValues(items: readonly string[], option: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const i = item.indexOf('=');
    if (i <= 0) throw new UsageError(`--${option} wants KEY=VALUE, got ${JSON.stringify(item)}`);
    out[item.slice(0, i)] = item.slice(i + 1);
  }
  return out;
}

// stdin can be read once: a password read from it is kept for the other side of cp.
const stdinText = new WeakMap<NodeJS.ReadableStream, Promise<string>>();

function readStdin(stream: NodeJS.ReadableStream): Promise<string> {
  let p = stdinText.get(stream);
  if (p === undefined) {
    p = (async () => {
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
      return Buffer.concat(chunks)
        .toString('utf8')
        .replace(/\r?\n$/, '');
    })();
    stdinText.set(stream, p);
  }
  return p;
}

/** CredentialSide picks the --src-… or --dest-… credential flags of cp. */
export type CredentialSide = 'src' | 'dest';

/**
 * remoteOptions builds the registry client options from the global flags;
 * with a side, `--src-username`/`--dest-username` (and their passwords)
 * take precedence for that side. Without flags, stored credentials (docker
 * config, credential helpers) are looked up per registry.
 */
export async function remoteOptions(
  ctx: CommandContext,
  side?: CredentialSide,
): Promise<RemoteOptions> {
  const own = (name: string): string | undefined =>
    side === undefined ? undefined : str(ctx, `${side}-${name}`);
  const sideGiven = own('username') !== undefined || flag(ctx, `${side ?? ''}-password-stdin`);
  const username =
    own('username') ??
    (sideGiven ? undefined : (str(ctx, 'username') ?? process.env.LADING_USERNAME));
  let password =
    own('password') ??
    (sideGiven ? undefined : (str(ctx, 'password') ?? process.env.LADING_PASSWORD));
  if (side !== undefined && flag(ctx, `${side}-password-stdin`))
    password = await readStdin(ctx.stdin);
  else if (!sideGiven && flag(ctx, 'password-stdin')) password = await readStdin(ctx.stdin);
  if ((username === undefined) !== (password === undefined)) {
    const prefix = side === undefined || !sideGiven ? '' : `${side}-`;
    throw new UsageError(
      `--${prefix}username and --${prefix}password go together`,
      'or use --password-stdin, or lading auth login',
    );
  }
  return {
    signal: ctx.signal,
    insecure: flag(ctx, 'insecure'),
    userAgent: 'lading-cli/0.1.0',
    ...(username !== undefined && password !== undefined ? { auth: { username, password } } : {}),
  };
}

/** OpenedTarget is a target plus what must happen when the command ends. */
export type OpenedTarget = {
  readonly target: Target;
  /** ref is the tag or digest to resolve or tag. */
  readonly ref: string | undefined;
  /**
   * readRef is what to resolve when reading: the tag or digest given, else
   * `latest` in a registry and `''` (the only image) in a layout or archive.
   */
  readonly readRef: string;
  /** finish commits (docker-archive writes its file) after a successful write. */
  finish(): Promise<void>;
  /**
   * abandon drops what a failed write left behind: a docker archive's
   * spooled layers (its temp dir), which finish() would have removed. A
   * registry or layout keeps the blobs it verified, as a registry would.
   */
  abandon(): Promise<void>;
  readonly label: string;
};

/**
 * abandoning runs `fn`, which writes to `targets`; if it fails (an error, a
 * refused blob, Ctrl-C), every target in `targets` at that moment (the
 * array may grow while `fn` runs) is abandoned first, so that nothing is
 * left in the temp dir.
 */
export async function abandoning<T>(
  targets: readonly OpenedTarget[],
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    for (const t of targets) await t.abandon().catch(() => undefined);
    throw err;
  }
}

/**
 * writing runs `fn`, which writes to `opened`, then commits it; a failure
 * of `fn` abandons it ({@link abandoning}). finish() cleans up after itself.
 */
export async function writing<T>(opened: OpenedTarget, fn: () => Promise<T>): Promise<T> {
  const result = await abandoning([opened], fn);
  await opened.finish();
  return result;
}

/** openTarget opens a location for reading or writing. */
export function openTarget(
  location: Location,
  options: RemoteOptions,
  mode: 'read' | 'write',
): OpenedTarget {
  switch (location.kind) {
    case 'registry': {
      const ref = parseRef(location.reference);
      return {
        target: registryTarget(ref.repo, options),
        ref: ref.digest ?? ref.tag,
        readRef: ref.digest ?? ref.tag,
        finish: () => Promise.resolve(),
        abandon: () => Promise.resolve(),
        label: location.reference,
      };
    }
    case 'oci': {
      // A layout this write creates goes again when the write fails, so
      // that a failed copy leaves no directory behind; one that was there
      // keeps what it had (its new blobs, referenced by no tag, stay).
      const created = mode === 'write' && !existsSync(location.dir);
      return {
        target: ociLayout(location.dir),
        ref: location.tag,
        readRef: location.tag ?? '',
        finish: () => Promise.resolve(),
        abandon: () =>
          created ? rm(location.dir, { recursive: true, force: true }) : Promise.resolve(),
        label: `oci:${location.dir}`,
      };
    }
    case 'docker-archive': {
      // Writing one image into an archive of several keeps the others.
      const archive: DockerArchive = dockerArchive(location.file, {
        mode,
        keepOtherImages: true,
      });
      return {
        target: archive,
        ref: location.tag,
        readRef: location.tag ?? '',
        finish: () =>
          mode === 'write' ? archive.close({ signal: options.signal }) : Promise.resolve(),
        abandon: () => (mode === 'write' ? archive.discard() : Promise.resolve()),
        label: `docker-archive:${location.file}`,
      };
    }
  }
}

/** parseRef splits a registry reference into repository (host/name), tag and digest. */
export function parseRef(text: string): {
  repo: string;
  tag: string;
  digest: string | undefined;
  full: string;
} {
  const r = parseReference(text);
  return {
    repo: `${r.registry}/${r.repository}`,
    tag: r.tag ?? 'latest',
    digest: r.digest,
    full: r.toString(),
  };
}

/** requireRef insists a local location names a tag. */
export function requireRef(opened: OpenedTarget): string {
  if (opened.ref === undefined) {
    throw new LadingError(ErrorCode.InvalidArgument, `${opened.label} needs a tag (…:TAG)`);
  }
  return opened.ref;
}

/**
 * now is a monotonic clock in milliseconds for {@link seconds}. Not
 * `performance.now()`: the global `performance` loads perf_hooks on first
 * use, a millisecond of every command's start-up.
 */
export function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** seconds formats elapsed time since `start` (from {@link now}). */
export function seconds(start: number): number {
  return Math.round((now() - start) / 10) / 100;
}

/**
 * pullForPlatform pulls an image: with `--platform` given, the matching one
 * (an index child, or a single image that must be for it); without, a
 * single image as it is, or an index's `fallback` platform.
 * @throws NOT_FOUND naming the platforms offered
 */
export async function pullForPlatform(
  ref: string,
  options: RemoteOptions,
  platform: string | undefined,
  fallback = 'linux/amd64',
): Promise<Image> {
  if (platform !== undefined) return pullImage(ref, { ...options, platform });
  const m = await pull(ref, options);
  return isImageIndex(m) ? pullImage(ref, { ...options, platform: fallback }) : m;
}
