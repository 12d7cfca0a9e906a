// Property: whatever method, path, headers and body a client sends, the
// registry answers without a 5xx, keeps running, and leaves the content it
// already stores exactly as it was.
import { request } from 'node:http';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, memoryStorage, type Registry } from '../src/index.js';
import { pushImage, req, type PushedImage } from './helpers.js';

interface Attempt {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Uint8Array | null;
}

/** send issues one request and resolves its status (0 when the server closed the connection). */
function send(port: number, a: Attempt): Promise<number> {
  return new Promise((resolve) => {
    let r;
    try {
      r = request(
        {
          host: '127.0.0.1',
          port,
          method: a.method,
          path: a.path,
          headers: a.headers,
          agent: false,
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            resolve(res.statusCode ?? 0);
          });
          res.on('error', () => {
            resolve(0);
          });
        },
      );
    } catch {
      resolve(-1); // the client itself refused the request (an invalid token or character)
      return;
    }
    r.on('error', () => {
      resolve(0);
    });
    r.end(a.body === null ? undefined : Buffer.from(a.body));
  });
}

describe('hostile requests (property)', () => {
  let registry: Registry;
  let port = 0;
  let seed: PushedImage;
  let url = '';

  const snapshot = async (): Promise<string> => {
    const parts = await Promise.all([
      req('GET', `${url}/v2/seed/app/manifests/v1`),
      req('GET', `${url}/v2/seed/app/manifests/${seed.digest}`),
      req('GET', `${url}/v2/seed/app/blobs/${seed.layer}`),
      req('GET', `${url}/v2/seed/app/blobs/${seed.config}`),
      req('GET', `${url}/v2/seed/app/tags/list`),
    ]);
    return JSON.stringify(parts.map((p) => [p.status, p.body.toString('base64')]));
  };

  beforeAll(async () => {
    registry = createRegistry({ storage: memoryStorage(), deleteEnabled: false });
    ({ url, port } = await registry.listen());
    seed = await pushImage(url, 'seed/app', 'v1');
  });
  afterAll(async () => {
    await registry.close();
  });

  it('never answers 5xx, never crashes, never changes stored content', async () => {
    const before = await snapshot();
    const digests = [
      seed.digest,
      seed.layer,
      seed.config,
      `sha256:${'0'.repeat(64)}`,
      'sha256:xyz',
    ];
    const text = fc.string({ maxLength: 40 });
    const segment = fc.oneof(
      fc.constantFrom('seed/app', 'seed', 'a', '..', '%2e%2e', 'A', 'a//b', '_catalog', 'v1', ''),
      fc.constantFrom(...digests),
      text.map((s) => encodeURIComponent(s)),
      fc.webSegment(),
    );
    const kind = fc.constantFrom(
      'manifests/',
      'blobs/',
      'blobs/uploads/',
      'tags/list',
      'referrers/',
      '',
    );
    const query = fc.oneof(
      fc.constant(''),
      fc
        .array(
          fc.tuple(
            fc.constantFrom('n', 'last', 'digest', 'mount', 'from', 'tag', 'artifactType', 'x'),
            fc.oneof(segment, fc.constantFrom('-1', '99999999999999999999', '1e3')),
          ),
          { maxLength: 3 },
        )
        .map((kv) => `?${kv.map(([k, v]) => `${k}=${v}`).join('&')}`),
    );
    const path = fc.oneof(
      fc.tuple(segment, kind, segment, query).map(([n, k, s, q]) => `/v2/${n}/${k}${s}${q}`),
      fc.tuple(segment, query).map(([n, q]) => `/v2/${n}/blobs/uploads/${q}`),
      fc.tuple(segment, query).map(([s, q]) => `/${s}${q}`),
      fc.webPath().map((p) => (p.startsWith('/') ? p : `/${p}`)),
      fc.constantFrom('/v2/', '/v2/_catalog', '/token', '/v2/_catalog?n=0'),
    );
    const headerValue = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.constantFrom(
        'bytes=0-',
        'bytes=-5',
        'bytes=5-1',
        'bytes=0-1,3-4',
        '0-10',
        '10-0',
        'application/vnd.oci.image.manifest.v1+json',
        'application/vnd.oci.image.index.v1+json',
        'Basic Og==',
        'Bearer a.b.c',
        '-1',
        '18446744073709551616',
      ),
    );
    const headers = fc.dictionary(
      fc.constantFrom(
        'Content-Type',
        'Content-Range',
        'Range',
        'Authorization',
        'Accept',
        'X-Forwarded-Proto',
        'If-None-Match',
        'Docker-Content-Digest',
      ),
      headerValue,
      { maxKeys: 4 },
    );
    const body = fc.option(
      fc.oneof(
        fc.uint8Array({ maxLength: 2048 }),
        fc.jsonValue({ maxDepth: 4 }).map((v) => new Uint8Array(Buffer.from(JSON.stringify(v)))),
        fc.constant(new Uint8Array(Buffer.from('{"schemaVersion":2,"layers":[{}]}'))),
      ),
    );
    const attempt = fc.record({
      method: fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'BREW'),
      path,
      headers,
      body,
    });
    let sent = 0;
    const seen = new Set<number>();
    await fc.assert(
      fc.asyncProperty(attempt, async (a) => {
        const status = await send(port, a);
        if (status === -1) return; // never reached the server
        sent++;
        seen.add(status);
        expect(status, `${a.method} ${a.path}`).toBeGreaterThanOrEqual(200);
        expect(status, `${a.method} ${a.path}`).toBeLessThan(500);
      }),
      {
        numRuns: 600,
        interruptAfterTimeLimit: 20_000,
        // Two well-formed requests always run too, so the coverage check
        // below does not depend on what a random seed happens to draw.
        examples: [
          [{ method: 'GET', path: '/v2/', headers: {}, body: null }],
          [{ method: 'POST', path: '/v2/a/blobs/uploads/', headers: {}, body: null }],
        ],
      },
    );
    expect(sent).toBeGreaterThan(50);
    // The runs reached the handlers, not only the router's 404.
    console.log(`statuses seen: ${[...seen].sort().join(' ')}`);
    for (const s of [200, 202, 400, 404, 405]) expect(seen).toContain(s);
    expect((await req('GET', `${url}/v2/`)).status).toBe(200);
    expect(await snapshot()).toBe(before);
  }, 60_000);
});
