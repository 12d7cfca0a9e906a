import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import {
  HashingStream,
  VerifyingStream,
  createHasher,
  digestOf,
  isLadingError,
  parseDigest,
  type Digest,
} from '../src/index.js';

const hex64 = 'a'.repeat(64);

describe('parseDigest', () => {
  it.each([['sha256:' + hex64], ['sha512:' + 'b'.repeat(128)]])('accepts %s', (d) => {
    expect(parseDigest(d)).toBe(d);
  });

  it.each([
    ['', 'missing'],
    ['sha256', 'missing'],
    ['sha256:' + 'A'.repeat(64), 'lowercase'],
    ['sha256:' + 'a'.repeat(63), '64 hex'],
    ['sha256:' + 'a'.repeat(65), '64 hex'],
    ['sha512:' + 'a'.repeat(64), '128 hex'],
    ['md5:' + 'a'.repeat(32), 'unsupported algorithm'],
    ['SHA256:' + hex64, 'unsupported algorithm'],
    ['sha256:' + 'g'.repeat(64), 'lowercase'],
    [' sha256:' + hex64, 'unsupported algorithm'],
  ])('rejects %j with INVALID_DIGEST when %s', (d, why) => {
    try {
      parseDigest(d);
      expect.unreachable();
    } catch (err) {
      expect(isLadingError(err, 'INVALID_DIGEST')).toBe(true);
      expect((err as Error).message).toContain(why);
    }
  });
});

describe('digestOf', () => {
  it('matches node:crypto sha256 and sha512', () => {
    const data = Buffer.from('lading');
    expect(digestOf(data)).toBe('sha256:' + createHash('sha256').update(data).digest('hex'));
    expect(digestOf(data, 'sha512')).toBe(
      'sha512:' + createHash('sha512').update(data).digest('hex'),
    );
  });

  it('gives the same digest from the portable fallback', () => {
    const data = Buffer.from('x'.repeat(10_000));
    for (const alg of ['sha256', 'sha512'] as const) {
      const fast = createHasher(alg);
      const slow = createHasher(alg, true);
      fast.update(data);
      slow.update(data);
      expect(slow.digest()).toBe(fast.digest());
    }
  });
});

describe('HashingStream', () => {
  it('counts and hashes the bytes that pass through when piped', async () => {
    const chunks = [Buffer.from('abc'), Buffer.from('defg')];
    const h = new HashingStream();
    const out: Buffer[] = [];
    await pipeline(Readable.from(chunks), h, async (src: AsyncIterable<Buffer>) => {
      for await (const c of src) out.push(c);
    });
    expect(h.size).toBe(7);
    expect(h.digest).toBe(digestOf('abcdefg'));
    expect(Buffer.concat(out).toString()).toBe('abcdefg');
  });
});

describe('VerifyingStream', () => {
  const drain = async (s: Readable, v: VerifyingStream): Promise<void> => {
    await pipeline(s, v, async (src: AsyncIterable<Buffer>) => {
      for await (const _ of src) {
        /* drain */
      }
    });
  };
  it('passes content that matches digest and size', async () => {
    await expect(
      drain(
        Readable.from([Buffer.from('hello')]),
        new VerifyingStream({ digest: digestOf('hello'), size: 5 }),
      ),
    ).resolves.toBeUndefined();
  });
  it('fails with DIGEST_MISMATCH when a byte differs', async () => {
    const err = await drain(
      Readable.from([Buffer.from('hellO')]),
      new VerifyingStream({ digest: digestOf('hello'), size: 5 }),
    ).catch((e: unknown) => e);
    expect(isLadingError(err, 'DIGEST_MISMATCH')).toBe(true);
  });
  it('fails with SIZE_MISMATCH when the content is longer or shorter', async () => {
    const d: Digest = digestOf('hello');
    for (const text of ['hello!', 'hell']) {
      const err = await drain(
        Readable.from([Buffer.from(text)]),
        new VerifyingStream({ digest: d, size: 5 }),
      ).catch((e: unknown) => e);
      expect(isLadingError(err, 'SIZE_MISMATCH')).toBe(true);
    }
  });
});

describe('parseDigest (property)', () => {
  it('accepts exactly the well-formed digests and throws only INVALID_DIGEST otherwise', async () => {
    const fc = await import('fast-check');
    const hex = (n: number) =>
      fc.string({
        unit: fc.constantFrom(...'0123456789abcdef'.split('')),
        minLength: n,
        maxLength: n,
      });
    fc.assert(
      fc.property(
        fc.oneof(
          hex(64).map((h) => `sha256:${h}`),
          hex(128).map((h) => `sha512:${h}`),
        ),
        (d) => {
          expect(parseDigest(d)).toBe(d);
          expect(digestOf(Buffer.from(d)).startsWith('sha256:')).toBe(true);
        },
      ),
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        const valid = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/.test(text);
        try {
          expect(parseDigest(text)).toBe(text);
          expect(valid).toBe(true);
        } catch (err) {
          expect(valid).toBe(false);
          expect(isLadingError(err, 'INVALID_DIGEST')).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
