import { MediaType } from '@lading/core';
import { HttpError, SpecErrorCode } from './errors.js';
import type { Call, RegistryContext } from './internal/context.js';
import { parseDigestParam, send, sendJson } from './internal/http.js';

// Content discovery: the catalog, tags list and referrers endpoints.

/**
 * paginate cuts `items` (sorted) to the page that `n` and `last` ask for,
 * with the `Link` header of the next page when there is one.
 * @throws HttpError 400 UNSUPPORTED when `n` is not a non-negative integer
 */
function paginate(
  ctx: RegistryContext,
  items: string[],
  query: URLSearchParams,
  path: string,
): { page: string[]; link?: string } {
  const nText = query.get('n');
  const last = query.get('last');
  let list = last === null ? items : items.filter((t) => t > last);
  if (nText === null) return { page: list };
  if (!/^\d+$/.test(nText)) {
    throw new HttpError(400, SpecErrorCode.Unsupported, 'n must be a non-negative integer', {
      n: nText,
    });
  }
  const n = Math.min(Number(nText), ctx.maxPage);
  if (n === 0) return { page: [] };
  const more = list.length > n;
  list = list.slice(0, n);
  const lastItem = list[list.length - 1];
  if (!more || lastItem === undefined) return { page: list };
  const next = new URLSearchParams({ n: String(n), last: lastItem });
  return { page: list, link: `<${path}?${next.toString()}>; rel="next"` };
}

/** catalog answers `GET /v2/_catalog`: the repositories `user` may pull. */
export async function catalog(call: Call, user: string | undefined): Promise<void> {
  const { ctx, req, res, query } = call;
  const all = await ctx.storage.metadata.listRepositories();
  const repos = all.filter((r) => ctx.auth.allowed(user, r).includes('pull'));
  const { page, link } = paginate(ctx, repos, query, '/v2/_catalog');
  sendJson(req, res, 200, { repositories: page }, link === undefined ? {} : { Link: link });
}

/**
 * tags answers `GET /v2/<name>/tags/list`.
 * @throws HttpError 404 NAME_UNKNOWN for an unknown repository
 */
export async function tags(call: Call, name: string): Promise<void> {
  const { ctx, req, res, query } = call;
  const meta = ctx.storage.metadata;
  if (!(await meta.repositoryExists(name))) {
    throw new HttpError(404, SpecErrorCode.NameUnknown, undefined, { name });
  }
  const list = await meta.listTags(name);
  const { page, link } = paginate(ctx, list, query, `/v2/${name}/tags/list`);
  sendJson(req, res, 200, { name, tags: page }, link === undefined ? {} : { Link: link });
}

/** referrers answers `GET /v2/<name>/referrers/<digest>`: an OCI index, empty for an unknown subject. */
export async function referrers(call: Call, name: string, digestText: string): Promise<void> {
  const { ctx, req, res, query } = call;
  const subject = parseDigestParam(digestText);
  let list = await ctx.storage.metadata.referrers(name, subject);
  const headers: Record<string, string> = { 'Content-Type': MediaType.OciIndex };
  const artifactType = query.get('artifactType');
  if (artifactType !== null) {
    list = list.filter((d) => d.artifactType === artifactType);
    headers['OCI-Filters-Applied'] = 'artifactType';
  }
  list = [...list].sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  const body = JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: list,
  });
  send(req, res, 200, headers, body);
}
