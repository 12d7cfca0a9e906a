import { readSync } from 'node:fs';
import { blockSize as chunkTarget, takeBlock } from './block-pool.js';

/**
 * Chunker writes the tar into fixed 1 MiB chunks: headers are copied in and
 * file contents are read straight into the chunk, so a file's bytes are
 * never held in a buffer of their own and later stages see few large
 * writes. Full chunks wait in `ready` until the walker yields them.
 */
export class Chunker {
  ready: Buffer[] = [];
  readonly #alloc: () => Buffer;
  #buf: Buffer;
  #used = 0;

  /** With `pooled`, chunks come from the block pool (see internal/block-pool.ts). */
  constructor(pooled: boolean) {
    this.#alloc = pooled ? takeBlock : () => Buffer.allocUnsafeSlow(chunkTarget);
    this.#buf = this.#alloc();
  }

  #advance(n: number): void {
    this.#used += n;
    if (this.#used === chunkTarget) {
      this.ready.push(this.#buf);
      this.#buf = this.#alloc();
      this.#used = 0;
    }
  }

  /** add copies `b` in. */
  add(b: Uint8Array): void {
    let off = 0;
    while (off < b.length) {
      const n = Math.min(b.length - off, chunkTarget - this.#used);
      this.#buf.set(b.subarray(off, off + n), this.#used);
      off += n;
      this.#advance(n);
    }
  }

  /** zeros appends `n` zero bytes (a file's padding). */
  zeros(n: number): void {
    while (n > 0) {
      const k = Math.min(n, chunkTarget - this.#used);
      this.#buf.fill(0, this.#used, this.#used + k);
      n -= k;
      this.#advance(k);
    }
  }

  /** readSync reads up to `size` bytes of `fd` from the start; returns how many it got. */
  readSync(fd: number, size: number): number {
    let got = 0;
    while (got < size) {
      const want = Math.min(size - got, chunkTarget - this.#used);
      const n = readSync(fd, this.#buf, this.#used, want, got);
      if (n === 0) break;
      got += n;
      this.#advance(n);
    }
    return got;
  }

  /** read reads once from `file` at `position`, at most `max` bytes; returns how many it got. */
  async read(
    file: { read: (b: Buffer, o: number, l: number, p: number) => Promise<{ bytesRead: number }> },
    position: number,
    max: number,
  ): Promise<number> {
    const want = Math.min(max, chunkTarget - this.#used);
    const { bytesRead } = await file.read(this.#buf, this.#used, want, position);
    this.#advance(bytesRead);
    return bytesRead;
  }

  /** take hands out the full chunks. */
  take(): Buffer[] {
    const r = this.ready;
    this.ready = [];
    return r;
  }

  /** rest hands out the partly filled chunk (at the end of the tar). */
  rest(): Buffer {
    const out = this.#buf.subarray(0, this.#used);
    this.#buf = this.#alloc();
    this.#used = 0;
    return out;
  }
}
