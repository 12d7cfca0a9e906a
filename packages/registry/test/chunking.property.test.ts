// Property: however a blob is split into PATCHes (streaming or with
// Content-Range) and an optional final PUT chunk, the registry stores exactly
// those bytes under their digest — and refuses any other digest.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, filesystemStorage, memoryStorage, type Registry } from '../src/index.js';
import { req, sha256 } from './helpers.js';

interface Plan {
  data: Uint8Array;
  cuts: number[];
  ranged: boolean[];
  finalInPut: boolean;
}

const plans = fc
  .record({
    data: fc.uint8Array({ minLength: 0, maxLength: 3000 }),
    cuts: fc.array(fc.nat({ max: 3000 }), { maxLength: 6 }),
    ranged: fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
    finalInPut: fc.boolean(),
  })
  .map((p): Plan => ({
    ...p,
    cuts: [...new Set(p.cuts.filter((c) => c > 0 && c < p.data.length))].sort((a, b) => a - b),
  }));

const dir = mkdtempSync(join(tmpdir(), 'lading-chunking-'));
const registries: Registry[] = [];
const bases: Record<string, string> = {};

beforeAll(async () => {
  for (const [kind, storage] of [
    ['memory', memoryStorage()],
    ['filesystem', filesystemStorage(dir)],
  ] as const) {
    const r = createRegistry({ storage });
    registries.push(r);
    bases[kind] = (await r.listen()).url;
  }
});
afterAll(async () => {
  for (const r of registries) await r.close();
  rmSync(dir, { recursive: true, force: true });
});

async function upload(base: string, plan: Plan, digest: string): Promise<number> {
  const data = Buffer.from(plan.data);
  const bounds = [0, ...plan.cuts, data.length];
  const pieces = bounds.slice(1).map((end, i) => ({ start: bounds[i]!, end }));
  const last = plan.finalInPut && pieces.length > 0 ? pieces.pop() : undefined;
  const post = await req('POST', `${base}/v2/prop/blobs/uploads/`);
  let location = String(post.headers.location);
  for (const [i, p] of pieces.entries()) {
    if (p.end === p.start) continue;
    const chunk = data.subarray(p.start, p.end);
    const r = plan.ranged[i % 8]
      ? await req('PATCH', `${base}${location}`, {
          body: chunk,
          headers: { 'Content-Range': `${p.start}-${p.end - 1}` },
        })
      : await req('PATCH', `${base}${location}`, { body: Readable.from([chunk]) });
    expect(r.status).toBe(202);
    expect(r.headers.range).toBe(`0-${Math.max(0, p.end - 1)}`);
    location = String(r.headers.location);
  }
  const url = `${base}${location}?digest=${digest}`;
  const put =
    last === undefined || last.end === last.start
      ? await req('PUT', url)
      : await req('PUT', url, {
          body: data.subarray(last.start, last.end),
          headers: { 'Content-Range': `${last.start}-${last.end - 1}` },
        });
  return put.status;
}

describe.each(['memory', 'filesystem'])('chunked uploads over %s storage', (kind) => {
  it('store exactly the bytes sent, however they are split', async () => {
    await fc.assert(
      fc.asyncProperty(plans, async (plan) => {
        const base = bases[kind]!;
        const digest = sha256(Buffer.from(plan.data));
        expect(await upload(base, plan, digest)).toBe(201);
        const got = await req('GET', `${base}/v2/prop/blobs/${digest}`);
        expect(got.body.equals(Buffer.from(plan.data))).toBe(true);
      }),
      { numRuns: 40 },
    );
  });

  it('refuse a digest that is not the bytes sent', async () => {
    await fc.assert(
      fc.asyncProperty(plans, async (plan) => {
        const wrong = sha256(Buffer.concat([Buffer.from(plan.data), Buffer.from([1])]));
        expect(await upload(bases[kind]!, plan, wrong)).toBe(400);
      }),
      { numRuns: 20 },
    );
  });
});
