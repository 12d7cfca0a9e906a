import { describe, expect, it } from 'vitest';
import { linkKey } from '../src/internal/link-key.js';

describe('linkKey', () => {
  it('keys a hard-linked file by dev:ino without a second stat while the numbers are exact', () => {
    let asked = 0;
    const exact = () => {
      asked++;
      return { dev: 0n, ino: 0n };
    };
    expect(linkKey({ dev: 2049, ino: 1234567 }, exact)).toBe('2049:1234567');
    expect(linkKey({ dev: 2049, ino: Number.MAX_SAFE_INTEGER }, exact)).toBe(
      `2049:${Number.MAX_SAFE_INTEGER}`,
    );
    expect(asked).toBe(0);
  });

  it('tells apart two inodes past 2^53 whose numbers round to the same double', () => {
    // As doubles both inode numbers are 2^60: without the exact ids the
    // second file would be written as a link to the first.
    const a = { dev: 64, ino: 2 ** 60 };
    const b = { dev: 64, ino: Number(2n ** 60n + 1n) };
    expect(a.ino).toBe(b.ino);
    const ka = linkKey(a, () => ({ dev: 64n, ino: 2n ** 60n }));
    const kb = linkKey(b, () => ({ dev: 64n, ino: 2n ** 60n + 1n }));
    expect(ka).toBe('64:1152921504606846976');
    expect(kb).toBe('64:1152921504606846977');
    expect(ka).not.toBe(kb);
  });
});
