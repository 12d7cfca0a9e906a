import * as zlib from 'node:zlib';

/** Crc32 computes a CRC-32 (gzip's) of `data`, continuing from `value`. */
export type Crc32 = (data: Uint8Array, value?: number) => number;

/** The reflected CRC-32 polynomial of gzip and zlib. */
const poly = 0xedb88320;

const crcTable = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? poly ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** tableCrc32 is a byte-at-a-time CRC-32 for Node versions without zlib.crc32. */
export function tableCrc32(data: Uint8Array, value = 0): number {
  let c = (value ^ 0xffffffff) >>> 0;
  for (const b of data) c = (crcTable[(c ^ b) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const zlibCrc = (zlib as { crc32?: Crc32 }).crc32;
/** crc32 is zlib.crc32 where Node has it (≥ 20.15), a table implementation otherwise. */
export const crc32: Crc32 = typeof zlibCrc === 'function' ? zlibCrc : tableCrc32;

// CRC combination works on polynomials over GF(2) modulo the CRC polynomial,
// in the reflected bit order: bit 31 is x^0.

/** multModP is a(x)·b(x) modulo the CRC polynomial. */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ poly : b >>> 1;
  }
  return p >>> 0;
}

/** x2nTable[k] is x^(2^k) modulo the CRC polynomial. */
const x2nTable = (() => {
  const t = new Array<number>(32);
  let p = 0x40000000; // x^1
  t[0] = p;
  for (let n = 1; n < 32; n++) t[n] = p = multModP(p, p);
  return t;
})();

/** x8nModP is x^(8·n) modulo the CRC polynomial: the operator that appends n zero bytes. */
function x8nModP(n: number): number {
  let p = 0x80000000; // x^0
  let k = 3;
  while (n > 0) {
    if (n % 2 === 1) p = multModP(x2nTable[k & 31] ?? 0, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/**
 * crc32Combine returns the CRC-32 of A followed by B from crc(A), crc(B) and
 * the length of B, without the bytes: what lets blocks be checksummed on
 * different threads.
 */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  return (multModP(x8nModP(lengthB), crcA) ^ crcB) >>> 0;
}
