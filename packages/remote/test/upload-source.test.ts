import { once } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { watchSource } from '../src/internal/upload-source.js';

/** collect reads `stream` to its end and returns the buffers it gave. */
async function collect(stream: Readable): Promise<Buffer[]> {
  const out: Buffer[] = [];
  stream.on('data', (c: Buffer) => out.push(c));
  await once(stream, 'end');
  return out;
}

describe('watchSource', () => {
  it('hands on the source’s own buffers, one per push, even when several are waiting', async () => {
    const blocks = [1, 2, 3, 4].map((n) => Buffer.alloc(256 * 1024, n));
    const source = new PassThrough({ highWaterMark: 4 * 1024 * 1024 });
    for (const b of blocks) source.write(b);
    source.end();
    const watch = watchSource(source);
    // All four are buffered in the source before the first read: an async
    // iterator's read() would return them as one concatenated copy.
    await new Promise((r) => setImmediate(r));
    const got = await collect(watch.stream);
    expect(got).toHaveLength(4);
    got.forEach((b, i) => {
      expect(b).toBe(blocks[i]);
    });
    expect(watch.error()).toBeUndefined();
  });

  it('keeps the source paused while its consumer does not read', async () => {
    let pulled = 0;
    const source = new Readable({
      read() {
        pulled++;
        this.push(Buffer.alloc(64 * 1024));
      },
    });
    const watch = watchSource(source);
    await new Promise((r) => setTimeout(r, 50));
    // The relay and the source each hold about one high-water mark.
    expect(pulled).toBeLessThan(8);
    watch.stream.destroy();
    await once(source, 'close');
  });

  it('records the source’s own failure and fails the relay with it', async () => {
    const source = new PassThrough();
    const watch = watchSource(source);
    const boom = new Error('tar exited 2');
    source.write(Buffer.from('abc'));
    setImmediate(() => source.destroy(boom));
    await expect(collect(watch.stream)).rejects.toBe(boom);
    expect(watch.error()).toBe(boom);
  });

  it('records a source that failed before it was watched', async () => {
    const boom = new Error('early');
    const source = new PassThrough();
    source.on('error', () => undefined);
    source.destroy(boom);
    await new Promise((r) => source.on('close', r));
    const watch = watchSource(source);
    await expect(collect(watch.stream)).rejects.toBe(boom);
    expect(watch.error()).toBe(boom);
  });

  it('does not take a consumer’s failure for the source’s, and releases the source', async () => {
    const source = new PassThrough();
    const watch = watchSource(source);
    source.write(Buffer.from('abc'));
    watch.stream.on('error', () => undefined);
    watch.stream.destroy(new Error('socket hang up'));
    await once(source, 'close');
    expect(source.destroyed).toBe(true);
    expect(watch.error()).toBeUndefined();
  });
});
