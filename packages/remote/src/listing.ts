import {
  ErrorCode,
  LadingError,
  MAX_MANIFEST_SIZE,
  MediaType,
  isLadingError,
  type Descriptor,
  type Digest,
  type IndexManifest,
} from '@lading/core';
import { parseLinkNext } from './internal/challenge.js';
import { header, type SendResponse, type Transport } from './internal/transport/index.js';

/**
 * PAGINATION_LIMITS bound what a paginated listing (tags, catalog,
 * referrers) reads from a registry: pages followed, total body bytes and
 * total entries. Past any of them the listing fails with REGISTRY_ERROR
 * rather than growing without bound.
 */
export const PAGINATION_LIMITS = {
  pages: 1000,
  bytes: 64 * 1024 * 1024,
  entries: 1_000_000,
} as const;

/** Listing is where a paginated listing starts and how to pick its entries. */
interface Listing<T> {
  readonly first: URL;
  readonly scopes: readonly string[];
  readonly pick: (body: unknown) => T[];
  readonly signal: AbortSignal | undefined;
}

function parsePage(body: Buffer, notJson: string): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new LadingError(ErrorCode.Registry, notJson, { cause: err });
  }
}

/**
 * paginate reads a listing and every `Link: rel="next"` page after it on
 * the registry's own origin, within {@link PAGINATION_LIMITS}.
 * @throws REGISTRY_ERROR (not JSON, a Link loop, past a limit), NOT_FOUND, UNAUTHORIZED
 */
export async function paginate<T>(t: Transport, listing: Listing<T>): Promise<T[]> {
  const { first, signal } = listing;
  const out: T[] = [];
  let url: URL | undefined = first;
  const seen = new Set<string>();
  let bytes = 0;
  const bounded = (why: string): LadingError =>
    new LadingError(ErrorCode.Registry, `${first.pathname}: ${why}; giving up`);
  const tooMany = (): LadingError =>
    bounded(`the pages add up to over ${PAGINATION_LIMITS.bytes} bytes`);
  for (let page = 0; url !== undefined; page++) {
    const current: URL = url;
    // A Link back to a page already read would loop forever.
    if (seen.has(current.href))
      throw bounded(`the next-page Link loops back to a page read before`);
    if (page >= PAGINATION_LIMITS.pages)
      throw bounded(`more than ${PAGINATION_LIMITS.pages} pages`);
    seen.add(current.href);
    // A page may be as large as what is left of the byte limit (registries
    // that list every tag in one answer send pages of many MiB).
    let got: { res: SendResponse; body: Buffer };
    try {
      got = await t.exchangeWhole(
        { method: 'GET', url: current, scopes: listing.scopes, signal },
        (r) => r.status === 200,
        PAGINATION_LIMITS.bytes - bytes,
      );
    } catch (err) {
      if (isLadingError(err, ErrorCode.ManifestTooLarge)) throw tooMany();
      throw err;
    }
    const { res, body } = got;
    const next = parseLinkNext(res.headers.link);
    bytes += body.length;
    const items = listing.pick(parsePage(body, `page ${current.pathname} is not JSON`));
    if (out.length + items.length > PAGINATION_LIMITS.entries) {
      throw bounded(`more than ${PAGINATION_LIMITS.entries} entries`);
    }
    // One push per item: push(...items) overflows the stack on a huge page.
    for (const item of items) out.push(item);
    url = undefined;
    if (next !== undefined) {
      const candidate = new URL(next, current);
      // Only follow pagination on the registry's own origin.
      if (candidate.origin === t.base.origin) url = candidate;
    }
  }
  return out;
}

/**
 * descriptors picks the `manifests` of a referrers page (an image index):
 * none when it has no such list; REGISTRY_ERROR for an entry that is not a
 * descriptor.
 */
function descriptors(page: unknown, what: string): Descriptor[] {
  const list = (page as Partial<IndexManifest> | null)?.manifests;
  if (!Array.isArray(list)) return [];
  return list.map((d: unknown) => {
    const x = d as Partial<Descriptor> | null;
    if (
      typeof x !== 'object' ||
      x === null ||
      typeof x.digest !== 'string' ||
      typeof x.mediaType !== 'string'
    )
      throw new LadingError(ErrorCode.Registry, `${what} list an entry that is not a descriptor`);
    return x as Descriptor;
  });
}

/** strings picks the string entries of `field` in a listing page. */
export function strings(field: string): (body: unknown) => string[] {
  return (b) => {
    const list = (b as Record<string, unknown>)[field];
    return Array.isArray(list) ? list.filter((t): t is string => typeof t === 'string') : [];
  };
}

/** ReferrersQuery is one referrers listing. */
export interface ReferrersQuery {
  readonly repo: string;
  readonly digest: Digest;
  readonly artifactType: string | undefined;
  readonly signal: AbortSignal | undefined;
  /** byTag reads the tag-schema fallback index (`sha256-<hex>`), [] when absent. */
  readonly byTag: () => Promise<Descriptor[]>;
}

/**
 * listReferrers asks the referrers API, falling back to the tag schema when
 * the registry answers 404, and filters by `artifactType` unless the
 * registry says it did.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-referrers
 */
export async function listReferrers(t: Transport, q: ReferrersQuery): Promise<Descriptor[]> {
  const url = t.url(`/v2/${q.repo}/referrers/${q.digest}`);
  if (q.artifactType !== undefined) url.searchParams.set('artifactType', q.artifactType);
  const scopes = [`repository:${q.repo}:pull`];
  let found: Descriptor[];
  let filtered = false;
  const { res, body } = await t.exchangeWhole(
    { method: 'GET', url, headers: { accept: MediaType.OciIndex }, scopes, signal: q.signal },
    (r) => r.status === 200 || r.status === 404,
    MAX_MANIFEST_SIZE,
  );
  if (res.status === 404) {
    found = await q.byTag();
  } else {
    filtered = header(res.headers, 'oci-filters-applied')?.includes('artifactType') === true;
    const what = `the referrers of ${q.digest}`;
    found = descriptors(parsePage(body, `${what} are not JSON`), what);
    // Follow pages on the same origin.
    const next = parseLinkNext(res.headers.link);
    if (next !== undefined) {
      const nextUrl = new URL(next, url);
      if (nextUrl.origin === t.base.origin) {
        const more = await paginate(t, {
          first: nextUrl,
          scopes,
          pick: (b) => descriptors(b, what),
          signal: q.signal,
        });
        for (const d of more) found.push(d);
      }
    }
  }
  if (q.artifactType !== undefined && !filtered) {
    found = found.filter((d) => d.artifactType === q.artifactType);
  }
  return found;
}
