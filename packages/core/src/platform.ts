import { ErrorCode, LadingError } from './errors.js';
import { isImageManifestMediaType, isIndexMediaType } from './media-types.js';
import { parseManifest } from './parse.js';
import type { Descriptor, Platform } from './wire.js';

/**
 * parsePlatform reads `os/arch[/variant]` (e.g. `linux/arm64/v8`).
 * @throws INVALID_ARGUMENT
 */
export function parsePlatform(text: string): Platform {
  // Lower case, and an architecture's alias as its GOARCH name (x86_64 →
  // amd64, aarch64 → arm64; armhf → arm/v7, armel → arm/v6), as containerd
  // parses platforms: what is written into a config is the spec's spelling.
  const parts = text.toLowerCase().split('/');
  const [os, alias, given] = parts;
  const architecture = alias === undefined ? undefined : (archAliases[alias] ?? alias);
  const variant =
    given !== undefined && given !== ''
      ? given
      : alias === 'armhf'
        ? 'v7'
        : alias === 'armel'
          ? 'v6'
          : undefined;
  if (
    parts.length > 3 ||
    os === undefined ||
    os === '' ||
    architecture === undefined ||
    architecture === ''
  ) {
    throw new LadingError(
      ErrorCode.InvalidArgument,
      `platform ${JSON.stringify(text)} is not os/arch[/variant]`,
    );
  }
  const p: Platform = { os, architecture };
  if (variant !== undefined && variant !== '') p.variant = variant;
  return p;
}

/** toPlatform accepts `os/arch[/variant]` or a Platform. @throws INVALID_ARGUMENT */
export function toPlatform(p: string | Platform): Platform {
  return typeof p === 'string' ? parsePlatform(p) : p;
}

/** formatPlatform writes `os/arch[/variant]`, with `os.version` in parentheses when set. */
export function formatPlatform(p: Platform): string {
  const base = `${p.os}/${p.architecture}${p.variant === undefined ? '' : `/${p.variant}`}`;
  return p['os.version'] === undefined ? base : `${base} (${p['os.version']})`;
}

// The aliases containerd and the Go toolchain normalize; the spec's values
// are GOOS/GOARCH.
const archAliases: Readonly<Record<string, string>> = {
  x86_64: 'amd64',
  'x86-64': 'amd64',
  aarch64: 'arm64',
  armhf: 'arm',
  armel: 'arm',
  i386: '386',
};

function normalArch(p: Platform): { architecture: string; variant: string | undefined } {
  const architecture = archAliases[p.architecture] ?? p.architecture;
  let variant = p.variant;
  if (variant === undefined && p.architecture === 'armhf') variant = 'v7';
  if (variant === undefined && p.architecture === 'armel') variant = 'v6';
  // The spec: arm64 without a variant is v8; arm without one is taken as v7
  // (as containerd and Docker do).
  if (variant === undefined && architecture === 'arm64') variant = 'v8';
  if (variant === undefined && architecture === 'arm') variant = 'v7';
  return { architecture, variant };
}

/**
 * platformMatches tells whether an image for `have` satisfies a request for
 * `want`, following the image-spec: the same os and architecture (aliases
 * such as `aarch64` normalized); the same variant, `arm64` meaning
 * `arm64/v8` and `arm` meaning `arm/v7` when the variant is omitted, and any
 * variant of other architectures when `want` names none; `os.version` when
 * `want` gives one (equal, or `have`'s is a longer dotted version of it);
 * every `os.features` entry `want` lists.
 * @see https://github.com/opencontainers/image-spec/blob/main/image-index.md#platform-variants
 */
export function platformMatches(want: Platform, have: Platform | undefined): boolean {
  if (have === undefined) return false;
  if (want.os !== have.os) return false;
  const w = normalArch(want);
  const h = normalArch(have);
  if (w.architecture !== h.architecture) return false;
  if (w.variant !== undefined && w.variant !== h.variant) return false;
  const wv = want['os.version'];
  const hv = have['os.version'];
  if (wv !== undefined && hv !== wv && !(hv?.startsWith(`${wv}.`) ?? false)) return false;
  const features = have['os.features'] ?? [];
  for (const f of want['os.features'] ?? []) if (!features.includes(f)) return false;
  return true;
}

/** ManifestLoader reads the bytes a descriptor names (a manifest, an index or a config), verified and capped. */
export type ManifestLoader = (desc: Descriptor) => Promise<Uint8Array>;

/** PlatformNotFoundError is NOT_FOUND for a platform nothing matches; `offered` lists what there is. */
export class PlatformNotFoundError extends LadingError {
  override name = 'PlatformNotFoundError';
  readonly offered: readonly string[];
  constructor(message: string, offered: readonly string[]) {
    super(ErrorCode.NotFound, message);
    this.offered = offered;
  }
}

/**
 * platformNotFound is the error every platform selection throws:
 * NOT_FOUND naming what was asked and the platforms on offer.
 */
export function platformNotFound(
  want: Platform,
  where: string,
  offered: readonly Platform[],
): PlatformNotFoundError {
  const names = [...new Set(offered.map(formatPlatform))];
  return new PlatformNotFoundError(
    `no image for platform ${formatPlatform(want)} in ${where} (it offers ${names.length === 0 ? 'no platform' : names.join(', ')})`,
    names,
  );
}

function configPlatform(bytes: Uint8Array): Platform | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new LadingError(ErrorCode.InvalidConfig, 'the image config is not JSON', {
      cause: err,
    });
  }
  const c = parsed as Partial<Platform> | null;
  if (c === null || typeof c.os !== 'string' || typeof c.architecture !== 'string')
    return undefined;
  const p: Platform = { os: c.os, architecture: c.architecture };
  if (typeof c.variant === 'string') p.variant = c.variant;
  if (typeof c['os.version'] === 'string') p['os.version'] = c['os.version'];
  if (Array.isArray(c['os.features'])) p['os.features'] = c['os.features'];
  return p;
}

interface Search {
  readonly want: Platform;
  readonly load: ManifestLoader;
  readonly offered: Platform[];
}

async function search(s: Search, index: Descriptor): Promise<Descriptor | undefined> {
  const parsed = parseManifest(await s.load(index), index.mediaType);
  if (parsed.kind !== 'index') return undefined;
  const children = parsed.manifest.manifests;
  for (const c of children) {
    if (isImageManifestMediaType(c.mediaType) && c.platform !== undefined) {
      s.offered.push(c.platform);
    }
  }
  // An exact entry first (linux/arm64/v8 over a bare linux/arm64 for
  // arm64/v8), then the first that matches, in index order.
  const images = children.filter(
    (c) => isImageManifestMediaType(c.mediaType) && platformMatches(s.want, c.platform),
  );
  const exact = images.find((c) => c.platform?.variant === s.want.variant);
  const hit = exact ?? images[0];
  if (hit !== undefined) return hit;
  // Nested indexes: their own platform (when given) is only a hint on
  // os/architecture; the variant is decided by their children.
  for (const c of children) {
    if (!isIndexMediaType(c.mediaType)) continue;
    const hint = c.platform;
    const sameArch =
      hint === undefined ||
      platformMatches(
        {
          os: s.want.os,
          architecture: s.want.architecture,
          ...(hint.variant === undefined ? {} : { variant: hint.variant }),
        },
        hint,
      );
    if (!sameArch) {
      s.offered.push(hint);
      continue;
    }
    const nested = await search(s, c);
    if (nested !== undefined) return nested;
  }
  return undefined;
}

/**
 * selectPlatform follows `root` to the image manifest for `want`: through an
 * index (nested indexes too), or checking a single image's config.
 * @throws NOT_FOUND naming the platforms offered, and whatever `load` throws.
 */
export async function selectPlatform(
  root: Descriptor,
  want: string | Platform,
  load: ManifestLoader,
): Promise<Descriptor> {
  const w = toPlatform(want);
  if (isIndexMediaType(root.mediaType)) {
    const s: Search = { want: w, load, offered: [] };
    const hit = await search(s, root);
    if (hit === undefined) throw platformNotFound(w, `the index ${root.digest}`, s.offered);
    return hit;
  }
  if (isImageManifestMediaType(root.mediaType)) {
    const parsed = parseManifest(await load(root), root.mediaType);
    if (parsed.kind !== 'image') return root;
    const have = configPlatform(await load(parsed.manifest.config));
    if (!platformMatches(w, have)) {
      throw platformNotFound(w, `the image ${root.digest}`, have === undefined ? [] : [have]);
    }
  }
  return root;
}
