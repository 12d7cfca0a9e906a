/**
 * ZstdFrames follows the frame and block headers of a zstd stream (RFC 8878
 * §3.1) as its bytes go by, without decompressing: it finds where each frame
 * ends, so that whatever follows the last one can be refused. Node's zstd
 * decompressor stops at the end of the last whole frame and drops anything
 * after it, garbage included, where the zstd tool and Go's decoders (the
 * ones container runtimes use) refuse it. Block contents are skipped, not
 * read: per 1 MiB frame it looks at a few dozen header bytes.
 */
export class ZstdFrames {
  /** #offset is the stream offset of the first byte not yet scanned. */
  #offset = 0;
  /** #skip is how many bytes to pass over before the next header. */
  #skip = 0;
  /** #header collects a header split across chunks. */
  #header: number[] = [];
  /** #want is what the next header is: a frame's magic, its frame header, or a block header. */
  #want: 'magic' | 'frame' | 'block' | 'skippable' = 'magic';
  /** #checksum says whether the current frame ends with a 4-byte checksum. */
  #checksum = false;
  /** #need is how many header bytes #want takes (a frame header's size comes with its first byte). */
  #need = 4;

  /**
   * scan takes the next chunk of the stream.
   * @throws an Error with code `ZSTD_error_prefix_unknown` (zstd's own code
   *   for it) where a frame should start and none does.
   */
  scan(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - i);
        this.#skip -= n;
        i += n;
        continue;
      }
      const b = chunk[i] ?? 0;
      this.#header.push(b);
      i++;
      if (this.#want === 'frame' && this.#header.length === 1) this.#need = frameHeaderSize(b);
      if (this.#header.length < this.#need) continue;
      this.#headerDone(this.#offset + i - this.#header.length);
      this.#header = [];
    }
    this.#offset += chunk.length;
  }

  /**
   * end says the stream ended.
   * @throws an Error with code `ZSTD_error_srcSize_wrong` when it ended
   *   inside a frame (or with no frame at all).
   */
  end(): void {
    const between = this.#want === 'magic' && this.#skip === 0;
    if (between && this.#header.length === 0 && this.#offset > 0) return;
    if (between && this.#offset > this.#header.length) {
      throw zstdError(
        'ZSTD_error_prefix_unknown',
        `${this.#header.length} bytes that are not a zstd frame after the last frame`,
      );
    }
    throw zstdError(
      'ZSTD_error_srcSize_wrong',
      this.#offset === 0
        ? 'empty stream'
        : `the stream ends inside a frame at byte ${this.#offset}`,
    );
  }

  #headerDone(at: number): void {
    const h = this.#header;
    const u32 = () =>
      ((h[0] ?? 0) | ((h[1] ?? 0) << 8) | ((h[2] ?? 0) << 16) | ((h[3] ?? 0) << 24)) >>> 0;
    switch (this.#want) {
      case 'magic': {
        const magic = u32();
        if (magic === 0xfd2fb528) {
          this.#want = 'frame';
          this.#need = 1;
        } else if (magic >>> 4 === 0x184d2a5) {
          this.#want = 'skippable';
          this.#need = 4;
        } else {
          throw zstdError(
            'ZSTD_error_prefix_unknown',
            at === 0
              ? 'not a zstd stream'
              : `data that is not a zstd frame after the last frame, at byte ${at}`,
          );
        }
        return;
      }
      case 'skippable':
        this.#skip = u32();
        this.#want = 'magic';
        this.#need = 4;
        return;
      case 'frame':
        this.#checksum = ((h[0] ?? 0) & 0x04) !== 0;
        this.#want = 'block';
        this.#need = 3;
        return;
      case 'block': {
        const v = (h[0] ?? 0) | ((h[1] ?? 0) << 8) | ((h[2] ?? 0) << 16);
        const last = (v & 1) === 1;
        const type = (v >> 1) & 3;
        const size = v >>> 3;
        // A raw or compressed block is `size` bytes; an RLE block is one
        // byte repeated. Reserved blocks are left to the decompressor.
        this.#skip = type === 1 ? 1 : size;
        if (last) {
          this.#skip += this.#checksum ? 4 : 0;
          this.#want = 'magic';
          this.#need = 4;
        }
        return;
      }
    }
  }
}

/** frameHeaderSize is the size of a frame header from its descriptor byte (RFC 8878 §3.1.1.1). */
function frameHeaderSize(descriptor: number): number {
  const fcsFlag = descriptor >> 6;
  const single = (descriptor & 0x20) !== 0;
  const didFlag = descriptor & 3;
  const fcs = fcsFlag === 0 ? (single ? 1 : 0) : 1 << fcsFlag;
  const did = didFlag === 3 ? 4 : didFlag;
  return 1 + (single ? 0 : 1) + did + fcs;
}

function zstdError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}
