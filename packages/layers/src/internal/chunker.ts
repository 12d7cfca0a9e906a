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

  /**
   * readSync reads the `size` bytes of `fd` from its start and returns how
   * many it got: fewer when the file shrank, `size + 1` when it has more
   * (it grew since its size was read). Where the chunk has room the last
   * read asks for one byte past `size`, so a file that ends where it should
   * costs no extra call.
   */
  readSync(fd: number, size: number): number {
    let got = 0;
    for (;;) {
      const rest = size - got;
      const want = Math.min(rest + 1, chunkTarget - this.#used);
      const n = readSync(fd, this.#buf, this.#used, want, got);
      if (n > rest) {
        this.#advance(rest);
        return size + 1;
      }
      if (n === 0) return got;
      got += n;
      this.#advance(n);
      if (got === size && n < want) return got;
    }
  }

  /**
   * read reads once from `file` at `position`, at most the `rest` bytes the
   * file should still have, asking for one more where the chunk has room.
   * `n` is how many of those it got; `grew` says the file had more than
   * `rest`; `end` says the read found the file's end right after them.
   */
  async read(
    file: { read: (b: Buffer, o: number, l: number, p: number) => Promise<{ bytesRead: number }> },
    position: number,
    rest: number,
  ): Promise<{ n: number; grew: boolean; end: boolean }> {
    const want = Math.min(rest + 1, chunkTarget - this.#used);
    const { bytesRead } = await file.read(this.#buf, this.#used, want, position);
    const n = Math.min(bytesRead, rest);
    this.#advance(n);
    return { n, grew: bytesRead > rest, end: bytesRead < want && n === rest };
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
