/** TarType is the kind of a tar entry lading writes. */
export type TarType =
  'file' | 'link' | 'symlink' | 'character-device' | 'block-device' | 'directory' | 'fifo';

const typeFlag: Record<TarType, number> = {
  file: 0x30,
  link: 0x31,
  symlink: 0x32,
  'character-device': 0x33,
  'block-device': 0x34,
  directory: 0x35,
  fifo: 0x36,
};

/**
 * TarName is an entry's name or link target: a string (written as UTF-8),
 * or the raw bytes of a name that is not valid UTF-8, as a file system
 * may hold it (written as they are, in a PAX record).
 */
export type TarName = string | Uint8Array;

/** TarHeader is one entry's metadata. */
export interface TarHeader {
  readonly name: TarName;
  readonly type: TarType;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  /** mtime in whole seconds since the epoch. */
  readonly mtime: number;
  readonly linkname?: TarName;
  readonly devmajor?: number;
  readonly devminor?: number;
  /** uname and gname name the owners: in the header when plain ASCII of up to 32 bytes, else in PAX records. */
  readonly uname?: string;
  readonly gname?: string;
  /**
   * pax holds more PAX records, written as they are after lading's own
   * (extended attributes, times): text as UTF-8, bytes byte for byte.
   */
  readonly pax?: Readonly<Record<string, string | Uint8Array>>;
}

const maxOctal7 = 0o7777777;
const maxOctal11 = 0o77777777777;

/** writeString writes `s` (ASCII, as encodeTarHeader makes every field) into at most `len` bytes. */
function writeString(buf: Buffer, s: string, off: number, len: number): void {
  const n = Math.min(s.length, len);
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) {
      buf.write(s, off, len, 'utf8');
      return;
    }
    buf[off + i] = c;
  }
}

/**
 * writeOctal writes `n` as `len - 1` zero-padded octal digits and a NUL,
 * digit by digit; anything else than a whole number that fits (never met:
 * every caller clamps) is written as its longest prefix, as before.
 */
function writeOctal(buf: Buffer, n: number, off: number, len: number): void {
  let v = Math.floor(n);
  if (v < 0 || v >= 8 ** (len - 1) || !Number.isSafeInteger(v)) {
    buf.write(v.toString(8).padStart(len - 1, '0'), off, len - 1, 'ascii');
  } else {
    for (let i = off + len - 2; i >= off; i--) {
      buf[i] = 0x30 + (v % 8);
      v = Math.floor(v / 8);
    }
  }
  buf[off + len - 1] = 0;
}

const ustarMagic = Buffer.from('ustar\u000000', 'ascii');

/**
 * ustarInto writes one ustar header into `b` at `off`, over 512 bytes that
 * are zero; `prefix` is the ustar prefix field (the name's leading
 * directories, see {@link ustarSplit}).
 */
function ustarInto(
  b: Buffer,
  off: number,
  h: Pick<TarHeader, 'mode' | 'uid' | 'gid' | 'mtime' | 'devmajor' | 'devminor'>,
  name: string,
  linkname: string,
  size: number,
  type: number,
  owners?: readonly [string, string],
  prefix = '',
): void {
  writeString(b, name, off, 100);
  writeOctal(b, h.mode & 0o7777, off + 100, 8);
  writeOctal(b, Math.min(h.uid, maxOctal7), off + 108, 8);
  writeOctal(b, Math.min(h.gid, maxOctal7), off + 116, 8);
  writeOctal(b, size, off + 124, 12);
  writeOctal(b, Math.min(Math.max(h.mtime, 0), maxOctal11), off + 136, 12);
  b.fill(0x20, off + 148, off + 156);
  b[off + 156] = type;
  writeString(b, linkname, off + 157, 100);
  b.set(ustarMagic, off + 257);
  if (owners !== undefined) {
    writeString(b, owners[0], off + 265, 32);
    writeString(b, owners[1], off + 297, 32);
  }
  writeOctal(b, h.devmajor ?? 0, off + 329, 8);
  writeOctal(b, h.devminor ?? 0, off + 337, 8);
  writeString(b, prefix, off + 345, 155);
  // The checksum, over the bytes written to: the prefix field when there is
  // a prefix, and the 345 before it; the rest of the 512 stays zero.
  let sum = 0;
  const end = off + (prefix === '' ? 345 : 500);
  for (let i = off; i < end; i++) sum += b[i] ?? 0;
  writeOctal(b, sum, off + 148, 7);
  b[off + 155] = 0x20;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = Buffer.byteLength(body);
  let len = bodyLen + String(bodyLen).length;
  if (String(len).length + bodyLen !== len) len = bodyLen + String(len).length;
  return `${len}${body}`;
}

/** rawPaxRecord is a record whose value is bytes taken as they are. */
function rawPaxRecord(key: string, value: Uint8Array): Buffer {
  const head = paxRecord(key, '\u0000'.repeat(value.length));
  const len = head.indexOf(' ');
  return Buffer.concat([
    Buffer.from(`${head.slice(0, len)} ${key}=`, 'ascii'),
    value,
    Buffer.from('\n'),
  ]);
}

function isPlainAscii(s: string, max: number): boolean {
  return s.length <= max && /^[\x20-\x7e]*$/.test(s);
}

/**
 * ustarSplit splits a plain-ASCII name of 101–256 bytes for ustar's prefix
 * (up to 155 bytes) and name (up to 100) fields at a slash, which readers
 * put back (POSIX ustar; Go's archive/tar, and so umoci and crane, write
 * long names so). The slash is the last one that leaves the name field
 * something: the shortest name part, so the split is found if there is one.
 * undefined when no slash works; the name then goes to a PAX record.
 */
function ustarSplit(name: string): [prefix: string, rest: string] | undefined {
  const slash = name.lastIndexOf('/', Math.min(155, name.length - 2));
  if (slash < 1 || name.length - slash - 1 > 100) return undefined;
  return [name.slice(0, slash), name.slice(slash + 1)];
}

/**
 * encodeTarHeader encodes a tar header as ustar, preceded by a PAX extended
 * header when a field does not fit ustar (non-ASCII names or link targets,
 * link targets over 100 bytes, names over 100 bytes that the prefix field
 * cannot take, sizes ≥ 8 GiB, ids over 2 097 151). The output is a
 * pure function of its input, so archives are reproducible. It is the one
 * tar-header writer of lading: directory layers (`@lading/layers`) and
 * docker archives (`@lading/layout`) both write with it.
 */
export function encodeTarHeader(h: TarHeader): Buffer {
  if (typeof h.name !== 'string' || (h.linkname !== undefined && typeof h.linkname !== 'string'))
    return encodeRawTarHeader(h);
  const pax: string[] = [];
  const linkname = h.linkname ?? '';
  let name = h.name;
  let prefix = '';
  if (!isPlainAscii(name, 100)) {
    const split = isPlainAscii(name, 256) ? ustarSplit(name) : undefined;
    if (split !== undefined) {
      [prefix, name] = split;
    } else {
      pax.push(paxRecord('path', name));
      name = truncate(name);
    }
  }
  let link = linkname;
  if (!isPlainAscii(linkname, 100)) {
    pax.push(paxRecord('linkpath', linkname));
    link = truncate(linkname);
  }
  return withPax(h, name, link, pax, h.name, undefined, prefix);
}

/**
 * encodeRawTarHeader writes a header whose name or link target is raw
 * bytes: they go into PAX records as they are, as Go's archive/tar writes
 * them (Docker, containerd, umoci); GNU tar and Go read them back byte for
 * byte. (No `hdrcharset=BINARY` record: GNU tar warns on every one.)
 */
function encodeRawTarHeader(h: TarHeader): Buffer {
  const records: Buffer[] = [];
  const field = (key: string, value: TarName): string => {
    records.push(
      typeof value === 'string'
        ? Buffer.from(paxRecord(key, value), 'utf8')
        : rawPaxRecord(key, value),
    );
    return truncate(typeof value === 'string' ? value : Buffer.from(value).toString('latin1'));
  };
  const name = field('path', h.name);
  const link = h.linkname === undefined ? '' : field('linkpath', h.linkname);
  return withPax(h, name, link, [], name, Buffer.concat(records));
}

/**
 * withPax adds the size, ids and mtime that do not fit ustar to the PAX records,
 * and writes the PAX header (when there are records) and the ustar one.
 */
function withPax(
  h: TarHeader,
  name: string,
  link: string,
  pax: string[],
  label: string,
  raw?: Buffer,
  prefix = '',
): Buffer {
  let size = h.size;
  if (size > maxOctal11) {
    pax.push(paxRecord('size', String(size)));
    size = 0;
  }
  if (h.uid > maxOctal7) pax.push(paxRecord('uid', String(h.uid)));
  if (h.gid > maxOctal7) pax.push(paxRecord('gid', String(h.gid)));
  // Past 2242-03-16 the 11 octal digits of ustar's mtime saturate.
  if (h.mtime > maxOctal11) pax.push(paxRecord('mtime', String(Math.trunc(h.mtime))));
  let owners: [string, string] | undefined;
  if (h.uname !== undefined || h.gname !== undefined) {
    const owner = (key: string, value = ''): string => {
      if (isPlainAscii(value, 32)) return value;
      pax.push(paxRecord(key, value));
      return '';
    };
    owners = [owner('uname', h.uname), owner('gname', h.gname)];
  }
  const rawExtras: Buffer[] = [];
  for (const [key, value] of Object.entries(h.pax ?? {})) {
    if (typeof value === 'string') pax.push(paxRecord(key, value));
    else rawExtras.push(rawPaxRecord(key, value));
  }
  const type = typeFlag[h.type];
  if (pax.length === 0 && raw === undefined && rawExtras.length === 0) {
    // From Node's shared pool: a header costs no allocation of its own.
    const b = Buffer.allocUnsafe(512).fill(0);
    ustarInto(b, 0, h, name, link, size, type, owners, prefix);
    return b;
  }
  // The PAX header, its records and their padding, then the ustar header:
  // one buffer, written in place.
  const text = pax.join('');
  const textLength = Buffer.byteLength(text);
  const bodyLength = (raw?.length ?? 0) + textLength + rawExtras.reduce((n, r) => n + r.length, 0);
  const out = Buffer.allocUnsafe(512 + bodyLength + tarPadding(bodyLength) + 512).fill(0);
  let at = 512;
  if (raw !== undefined) at += raw.copy(out, at);
  at += out.write(text, at, 'utf8');
  for (const r of rawExtras) at += r.copy(out, at);
  const paxName = truncate(`PaxHeaders/${lastPart(label)}`);
  ustarInto(out, 0, { mode: 0o644, uid: 0, gid: 0, mtime: h.mtime }, paxName, '', bodyLength, 0x78);
  ustarInto(out, out.length - 512, h, name, link, size, type, owners, prefix);
  return out;
}

/** lastPart is what follows the last slash of `label`, trailing slashes dropped. */
function lastPart(label: string): string {
  let end = label.length;
  while (end > 0 && label.charCodeAt(end - 1) === 0x2f) end--;
  return label.slice(label.lastIndexOf('/', end - 1) + 1, end);
}

function truncate(s: string): string {
  // Keep the ustar fallback field plain ASCII and within 100 bytes.
  return s.replace(/[^\x20-\x7e]/g, '_').slice(0, 100);
}

/** tarPadding is the number of zero bytes that round an entry of `size` bytes up to 512. */
export function tarPadding(size: number): number {
  const r = size % 512;
  return r === 0 ? 0 : 512 - r;
}

/** tarTrailer is the two zero blocks that end an archive. */
export const tarTrailer: Buffer = Buffer.alloc(1024);
