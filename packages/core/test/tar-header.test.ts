import { describe, expect, it } from 'vitest';
import { encodeTarHeader, type TarHeader } from '../src/internal-api.js';

/** field reads a NUL- or space-terminated ustar field. */
function field(b: Buffer, off: number, len: number): string {
  const raw = b.subarray(off, off + len).toString('latin1');
  return raw.replace(/[\0 ].*$/s, '');
}

function octal(b: Buffer, off: number, len: number): number {
  return parseInt(field(b, off, len), 8);
}

/** checksumOk checks the ustar rule: the sum of the bytes, the checksum field counted as spaces. */
function checksumOk(b: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (b[i] ?? 0);
  return octal(b, 148, 8) === sum && b[154] === 0 && b[155] === 0x20;
}

/** paxRecords parses the records of a PAX header's body. */
function paxRecords(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let at = 0;
  const text = body.toString('utf8');
  while (at < text.length) {
    const space = text.indexOf(' ', at);
    const len = Number(text.slice(at, space));
    const rec = Buffer.from(text.slice(at)).subarray(0, len).toString('utf8');
    const [key, value] = rec.slice(rec.indexOf(' ') + 1, -1).split(/=(.*)/s);
    out[key ?? ''] = value ?? '';
    at += rec.length;
  }
  return out;
}

const base: TarHeader = { name: 'a', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 };

describe('encodeTarHeader', () => {
  it('writes every ustar field in octal, with a valid checksum', () => {
    const h: TarHeader = {
      name: 'usr/lib/libx.so.1',
      type: 'character-device',
      mode: 0o104755,
      uid: 2_097_151,
      gid: 1000,
      size: 8_589_934_591,
      mtime: 1_700_000_000,
      linkname: 'target',
      devmajor: 4095,
      devminor: 1_048_575,
    };
    const b = encodeTarHeader(h);
    expect(b.length).toBe(512);
    expect(field(b, 0, 100)).toBe(h.name);
    expect(octal(b, 100, 8)).toBe(0o4755);
    expect(octal(b, 108, 8)).toBe(h.uid);
    expect(octal(b, 116, 8)).toBe(h.gid);
    expect(octal(b, 124, 12)).toBe(h.size);
    expect(octal(b, 136, 12)).toBe(h.mtime);
    expect(String.fromCharCode(b[156] ?? 0)).toBe('3');
    expect(field(b, 157, 100)).toBe('target');
    expect(b.subarray(257, 265).toString('latin1')).toBe('ustar\u000000');
    expect(octal(b, 329, 8)).toBe(4095);
    expect(octal(b, 337, 8)).toBe(1_048_575);
    // Every number field is zero-padded to its width, then NUL.
    expect(b.subarray(100, 108).toString('latin1')).toBe('0004755\0');
    expect(checksumOk(b)).toBe(true);
  });

  it('adds a PAX header exactly for what ustar cannot hold', () => {
    const cases: [Partial<TarHeader>, Record<string, string>][] = [
      [{ name: 'n'.repeat(100) }, {}],
      [{ name: 'n'.repeat(101) }, { path: 'n'.repeat(101) }],
      [{ name: 'café' }, { path: 'café' }],
      [{ linkname: 'l'.repeat(101), type: 'symlink' }, { linkpath: 'l'.repeat(101) }],
      [
        { uid: 2_097_152, gid: 3_000_000 },
        { uid: '2097152', gid: '3000000' },
      ],
      [{ size: 8_589_934_592 }, { size: '8589934592' }],
      [{ mtime: 8_589_934_591 }, {}],
      [{ mtime: 10_413_792_000 }, { mtime: '10413792000' }],
    ];
    for (const [patch, want] of cases) {
      const h = { ...base, ...patch };
      const b = encodeTarHeader(h);
      if (Object.keys(want).length === 0) {
        expect(b.length, JSON.stringify(patch)).toBe(512);
        continue;
      }
      const paxHeader = b.subarray(0, 512);
      expect(String.fromCharCode(paxHeader[156] ?? 0)).toBe('x');
      expect(checksumOk(paxHeader)).toBe(true);
      const bodyLen = octal(paxHeader, 124, 12);
      expect(paxRecords(b.subarray(512, 512 + bodyLen))).toEqual(want);
      const main = b.subarray(b.length - 512);
      expect(checksumOk(main)).toBe(true);
      // The ustar fields keep a plain-ASCII stand-in within their width.
      expect(field(main, 0, 100)).toMatch(/^[\x20-\x7e]{1,100}$/);
      if (patch.size !== undefined) expect(octal(main, 124, 12)).toBe(0);
      if (patch.uid !== undefined) expect(octal(main, 108, 8)).toBe(0o7777777);
      if (patch.mtime !== undefined) expect(octal(main, 136, 12)).toBe(0o77777777777);
    }
  });
  it('splits a long ASCII name at a slash into the prefix field, else writes it to PAX', () => {
    const dir =
      'node_modules/.pnpm/@scope+package-name@1.2.3_peer@4.5.6/node_modules/@scope/package-name/packages/inner';
    const split: [string, string, string][] = [
      // name, prefix field, name field
      [`${dir}/dist/esm/index.js`, `${dir}/dist/esm`, 'index.js'],
      [`${dir}/lib/`, dir, 'lib/'],
      [`${'p'.repeat(155)}/${'n'.repeat(100)}`, 'p'.repeat(155), 'n'.repeat(100)],
      [`a/${'b'.repeat(99)}`, 'a', 'b'.repeat(99)],
      // The last slash that leaves the name field something wins.
      [`${'x/'.repeat(60)}f`, 'x/'.repeat(60).slice(0, -1), 'f'],
    ];
    for (const [name, prefix, rest] of split) {
      expect(name.length).toBeGreaterThan(100);
      const b = encodeTarHeader({ ...base, name });
      expect(b.length, name).toBe(512);
      expect(field(b, 345, 155)).toBe(prefix);
      expect(b.subarray(0, 100).toString('latin1').replace(/\0+$/, '')).toBe(rest);
      expect(
        `${field(b, 345, 155)}/${b.subarray(0, 100).toString('latin1').replace(/\0+$/, '')}`,
      ).toBe(name);
      expect(checksumOk(b)).toBe(true);
    }
    const pax = [
      `${'p'.repeat(156)}/${'n'.repeat(99)}`, // no slash within 155 bytes
      `a/${'n'.repeat(101)}`, // the last part over 100 bytes
      `${'d/'.repeat(128)}f`, // over 256 bytes
      `${dir}/café/index.js`, // not ASCII
      `/${'n'.repeat(100)}`, // only a leading slash
    ];
    for (const name of pax) {
      const b = encodeTarHeader({ ...base, name });
      expect(String.fromCharCode(b[156] ?? 0), name).toBe('x');
      const bodyLen = octal(b, 124, 12);
      expect(paxRecords(b.subarray(512, 512 + bodyLen))).toEqual({ path: name });
      const main = b.subarray(b.length - 512);
      expect(main[345]).toBe(0);
      expect(checksumOk(main)).toBe(true);
    }
    // A split name with a record of its own: the PAX header holds only that.
    const both = encodeTarHeader({ ...base, name: `${dir}/dist/esm/index.js`, uid: 3_000_000 });
    expect(paxRecords(both.subarray(512, 512 + octal(both, 124, 12)))).toEqual({ uid: '3000000' });
    expect(field(both.subarray(both.length - 512), 345, 155)).toBe(`${dir}/dist/esm`);
  });

  it('writes owner names into the header when they fit, else PAX records, and extra records after its own', () => {
    const plain = encodeTarHeader({ ...base, uname: 'alice', gname: 'staff' });
    expect(plain.length).toBe(512);
    expect(checksumOk(plain)).toBe(true);
    expect([field(plain, 265, 32), field(plain, 297, 32)]).toEqual(['alice', 'staff']);

    const b = encodeTarHeader({
      ...base,
      name: 'n'.repeat(101),
      uname: 'u'.repeat(33),
      gname: 'grüppe',
      pax: { 'SCHILY.xattr.user.k': 'v=1', mtime: '1.5' },
    });
    const size = octal(b, 124, 12);
    expect(paxRecords(b.subarray(512, 512 + size))).toEqual({
      path: 'n'.repeat(101),
      uname: 'u'.repeat(33),
      gname: 'grüppe',
      'SCHILY.xattr.user.k': 'v=1',
      mtime: '1.5',
    });
    const main = b.subarray(b.length - 512);
    expect(checksumOk(main)).toBe(true);
    // Names that do not fit are left out of the header, not cut.
    expect([field(main, 265, 32), field(main, 297, 32)]).toEqual(['', '']);
  });

  it('writes names that are raw bytes into PAX records byte for byte, with exact record lengths', () => {
    /** rawRecords parses a PAX body as bytes: each record's length, key and value. */
    const rawRecords = (body: Buffer): { len: number; key: string; value: Buffer }[] => {
      const out: { len: number; key: string; value: Buffer }[] = [];
      for (let at = 0; at < body.length;) {
        const space = body.indexOf(0x20, at);
        const len = Number(body.subarray(at, space).toString('ascii'));
        const rec = body.subarray(at, at + len);
        expect(rec[rec.length - 1]).toBe(0x0a);
        const eq = rec.indexOf(0x3d);
        out.push({
          len,
          key: rec.subarray(space - at + 1, eq).toString('ascii'),
          value: rec.subarray(eq + 1, rec.length - 1),
        });
        at += len;
      }
      return out;
    };
    // Lengths on both sides of a change in the length's own digit count.
    for (const n of [1, 80, 88, 89, 90, 91, 985, 986, 987, 5000]) {
      const name = Buffer.concat([Buffer.from('d/'), Buffer.alloc(n, 0xff)]);
      const linkname = Buffer.from([0x74, 0xfe, 0x2f, 0x61]);
      const b = encodeTarHeader({ ...base, name, type: 'symlink', linkname });
      expect(checksumOk(b.subarray(0, 512))).toBe(true);
      expect(b[156]).toBe(0x78);
      const size = octal(b, 124, 12);
      const records = rawRecords(b.subarray(512, 512 + size));
      expect(records.map((r) => [r.key, r.value.toString('hex')])).toEqual([
        ['path', name.toString('hex')],
        ['linkpath', linkname.toString('hex')],
      ]);
      expect(records.reduce((sum, r) => sum + r.len, 0)).toBe(size);
      const main = b.subarray(b.length - 512);
      expect(checksumOk(main)).toBe(true);
      // The ustar fallback fields stay plain ASCII.
      expect(field(main, 0, 100)).toBe(`d/${'_'.repeat(Math.min(n, 98))}`);
      expect(field(main, 157, 100)).toBe('t_/a');
    }
    // A string name beside a raw target: the name as UTF-8.
    const mixed = encodeTarHeader({
      ...base,
      name: 'é',
      type: 'link',
      linkname: Buffer.from([0xc3]),
    });
    const records = rawRecords(mixed.subarray(512, 512 + octal(mixed, 124, 12)));
    expect(records.map((r) => r.value.toString('hex'))).toEqual(['c3a9', 'c3']);
  });
});
