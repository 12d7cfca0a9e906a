// Types for the three files of undici that transport/undici.ts imports
// (undici ships types for its index only). Each is CommonJS and sets
// module.exports, which Node hands to an ES module as its default export.
/* eslint-disable no-restricted-syntax -- default exports: see above */

declare module 'undici/lib/dispatcher/agent.js' {
  import type { Agent } from 'undici';
  const agent: typeof Agent;
  export default agent;
}

declare module 'undici/lib/api/api-request.js' {
  import type { Dispatcher } from 'undici';
  const request: (
    this: Dispatcher,
    options: Dispatcher.RequestOptions,
  ) => Promise<Dispatcher.ResponseData>;
  export default request;
}

declare module 'undici/lib/core/util.js' {
  const util: { parseURL(url: URL): URL };
  export default util;
}
