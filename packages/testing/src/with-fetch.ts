import type { Descriptor, IoOptions, Target } from '@lading/core';
import type { Readable } from 'node:stream';

/**
 * withFetch is `target` with `fetch` in place of its own: a source that
 * serves corrupt bytes or loses a blob, for copy() tests. `fetch` gets the
 * target's own fetch to fall back on.
 */
export function withFetch(
  target: Target,
  fetch: (
    desc: Descriptor,
    options: IoOptions | undefined,
    own: Target['fetch'],
  ) => Promise<Readable>,
): Target {
  const own: Target['fetch'] = (d, o) => target.fetch(d, o);
  return {
    resolve: (r, o) => target.resolve(r, o),
    exists: (d, o) => target.exists(d, o),
    push: (d, c, o) => target.push(d, c, o),
    tag: (d, r, o) => target.tag(d, r, o),
    fetch: (d, o) => fetch(d, o, own),
  };
}
