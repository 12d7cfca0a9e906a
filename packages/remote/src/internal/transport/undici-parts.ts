import type * as Undici from 'undici';

/** RequestOptions are undici's request options; lading always names a dispatcher. */
export type RequestOptions = Omit<Undici.Dispatcher.RequestOptions, 'origin' | 'path'> & {
  readonly dispatcher: Undici.Dispatcher;
};

/** UndiciParts are the two things of undici that lading calls. */
export interface UndiciParts {
  readonly Agent: typeof Undici.Agent;
  readonly request: (url: URL, options: RequestOptions) => Promise<Undici.Dispatcher.ResponseData>;
  /** whole says the parts came from undici's index (its own files could not be loaded). */
  readonly whole: boolean;
}

type Load = (id: string) => unknown;

/**
 * loadUndici loads `Agent` and `request` from undici's own files rather
 * than its index, which also loads fetch, WebSocket, EventSource, the cache
 * stores and the mock agent: on Node 20 here ~45 instead of ~120 ms and
 * ~8 MiB less RSS for every process that imports @lading/remote. `request`
 * is then the index's `request(url, { dispatcher, … })` for a URL and a
 * dispatcher, the only way lading calls it. Where undici's files are not
 * where this version has them (another undici 7), it loads the index.
 */
export function loadUndici(load: Load): UndiciParts {
  try {
    const Agent = load('undici/lib/dispatcher/agent.js') as typeof Undici.Agent;
    const apiRequest = load('undici/lib/api/api-request.js') as (
      this: Undici.Dispatcher,
      options: Undici.Dispatcher.RequestOptions,
    ) => Promise<Undici.Dispatcher.ResponseData>;
    const { parseURL } = load('undici/lib/core/util.js') as { parseURL?: (u: URL) => URL };
    if (typeof Agent === 'function' && typeof apiRequest === 'function' && parseURL) {
      const request = (
        url: URL,
        options: RequestOptions,
      ): Promise<Undici.Dispatcher.ResponseData> => {
        // As undici's index does: its checks on the URL, then origin and path.
        const u = parseURL(url);
        return apiRequest.call(options.dispatcher, {
          ...options,
          origin: u.origin,
          path: u.search ? `${u.pathname}${u.search}` : u.pathname,
          method: options.method,
        });
      };
      return { Agent, request, whole: false };
    }
  } catch {
    // Another layout of undici's files: the index below.
  }
  const whole = load('undici') as typeof Undici;
  return { Agent: whole.Agent, request: whole.request, whole: true };
}
