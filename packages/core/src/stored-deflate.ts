// The rule for blocks deflate would hardly shrink, shared by core's
// RawDeflater and the block gzip workers of @lading/layers. The workers are
// a CommonJS string, so they run these functions' own source
// (`String(fn)`): each is self-contained, naming nothing outside itself.

/**
 * incompressible says whether a block of `length` bytes is one deflate at
 * `level` gains too little on to be worth its time (compressed media,
 * archives, random data): libdeflate spends 16 ms per MiB at level 1 on
 * random bytes (one core here), against 7–10 ms on binaries and text, to
 * save nothing. 32 samples of 1 KiB spread evenly over the block (one every
 * 32 KiB of a 1 MiB block) are each deflated alone (`deflatedSize` answers
 * the size of the range's deflate stream); the block is incompressible when
 * they shrink by less than 5 % in all at level 1, the speed-first default,
 * or 2 % at a higher level. Blocks under 64 KiB never are. A compressible
 * block costs a few samples: the test ends once the saving is reached
 * (text saves ~600 bytes per sample).
 */
export function incompressible(
  length: number,
  level: number,
  deflatedSize: (at: number, length: number) => number,
): boolean {
  const sample = 1024;
  const samples = 32;
  if (length < 64 * sample) return false;
  const step = Math.floor((length - sample) / (samples - 1));
  // The bytes deflate must save on the samples for the block to be deflated.
  const enough = (samples * sample * (level <= 1 ? 5 : 2)) / 100;
  let saved = 0;
  for (let i = 0; i < samples; i++) {
    saved += sample - deflatedSize(i * step, sample);
    if (saved >= enough) return false;
  }
  return true;
}

/** storedDeflateSize is the size of {@link storedDeflate}'s stream for `length` bytes. */
export function storedDeflateSize(length: number): number {
  return length + 5 * Math.max(1, Math.ceil(length / 65535));
}

/**
 * storedDeflate writes `data` into `out` at `at` as one raw deflate stream
 * of stored blocks (RFC 1951 §3.2.4: each up to 65 535 bytes behind a
 * 5-byte header, the last one final) and answers where it ended. `out`
 * must hold {@link storedDeflateSize} bytes from `at`.
 */
export function storedDeflate(data: Uint8Array, out: Uint8Array, at: number): number {
  let o = at;
  let off = 0;
  do {
    const len = Math.min(65535, data.length - off);
    out[o] = off + len === data.length ? 1 : 0;
    out[o + 1] = len & 0xff;
    out[o + 2] = len >>> 8;
    out[o + 3] = ~len & 0xff;
    out[o + 4] = (~len >>> 8) & 0xff;
    out.set(data.subarray(off, off + len), o + 5);
    o += 5 + len;
    off += len;
  } while (off < data.length);
  return o;
}
