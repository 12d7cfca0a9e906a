import type * as Undici from 'undici';
import agent from 'undici/lib/dispatcher/agent.js';
import apiRequest from 'undici/lib/api/api-request.js';
import util from 'undici/lib/core/util.js';

// undici's Agent and request, from undici's own files rather than its
// index, which also loads fetch, WebSocket, EventSource, the cache stores
// and the mock agent: importing core, layers and remote took 161 instead
// of 218 ms on Node 20 here (142 instead of 220 on Node 26), with 3.7 MiB
// (10.5 MiB) less RSS. Static imports, so that a bundler (esbuild,
// webpack, rollup) follows them as it would the index.
// These paths are not undici's public API: package.json allows patch
// releases of the undici they were checked against only, and the tests
// (undici.test.ts) load them.

/** Agent is undici's Agent (the class, and its instances' type). */
export const Agent: typeof Undici.Agent = agent;
export type Agent = Undici.Agent;

/** RequestOptions are undici's request options; lading always names a dispatcher. */
export type RequestOptions = Omit<Undici.Dispatcher.RequestOptions, 'origin' | 'path'> & {
  readonly dispatcher: Undici.Dispatcher;
};

/**
 * request is undici's `request(url, { dispatcher, … })` (its index's
 * makeDispatcher) for what lading passes: a URL and a dispatcher. A URL
 * undici refuses (not http: or https:) throws, as there.
 */
export function request(
  url: URL,
  options: RequestOptions,
): Promise<Undici.Dispatcher.ResponseData> {
  const u = util.parseURL(url);
  return apiRequest.call(options.dispatcher, {
    ...options,
    origin: u.origin,
    path: u.search ? `${u.pathname}${u.search}` : u.pathname,
  });
}
