import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { createDecompressor, isLadingError } from '@lading/core';
import { ByteCounter, Limiter, decompressionError, deferred } from '@lading/core/internal';

function sink(): Writable {
  return new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });
}

function chunks(...sizes: number[]): Readable {
  return Readable.from(
    sizes.map((n) => Buffer.alloc(n, 1)),
    { objectMode: false },
  );
}

describe('Limiter', () => {
  it('runs at most max tasks at once, in the order they asked, when more are queued', async () => {
    const limiter = new Limiter(2);
    let active = 0;
    let peak = 0;
    const started: number[] = [];
    const gates = Array.from({ length: 5 }, () => deferred<undefined>());
    const runs = gates.map((gate, i) =>
      limiter.run(async () => {
        started.push(i);
        active++;
        peak = Math.max(peak, active);
        await gate.promise;
        active--;
        return i;
      }),
    );
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([0, 1]);
    for (const g of gates) g.resolve(undefined);
    expect(await Promise.all(runs)).toEqual([0, 1, 2, 3, 4]);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(peak).toBe(2);
  });

  it('frees the slot of a task that fails when the next one waits', async () => {
    const limiter = new Limiter(1);
    const failing = limiter.run(() => Promise.reject(new Error('boom')));
    const next = limiter.run(() => Promise.resolve('ran'));
    await expect(failing).rejects.toThrow('boom');
    expect(await next).toBe('ran');
  });

  it('refuses a bound that is not an integer ≥ 1 with INVALID_ARGUMENT', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => new Limiter(bad)).toSatisfy((f: () => unknown) => {
        try {
          f();
          return false;
        } catch (err) {
          return isLadingError(err, 'INVALID_ARGUMENT');
        }
      });
    }
  });
});

describe('deferred', () => {
  it('keeps the first settlement when resolve and reject are both called', async () => {
    const d = deferred<number>();
    expect(d.settled).toBe(false);
    d.resolve(1);
    d.reject(new Error('late'));
    d.resolve(2);
    expect(d.settled).toBe(true);
    expect(await d.promise).toBe(1);
  });

  it('raises no unhandled rejection when nobody awaits a rejected one', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      deferred<number>().reject(new Error('nobody listens'));
      await new Promise((r) => setTimeout(r, 20));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
  });
});

describe('ByteCounter', () => {
  it('counts the bytes and reports the running total per chunk when they pass', async () => {
    const totals: number[] = [];
    const counter = new ByteCounter({
      onChunk: (_chunk, total) => {
        totals.push(total);
        return undefined;
      },
    });
    await pipeline(chunks(3, 5, 0, 7), counter, sink());
    expect(counter.count).toBe(15);
    expect(totals).toEqual([3, 8, 15]);
  });

  it('fails with SIZE_MISMATCH, or the overLimit error, when more than limit bytes arrive', async () => {
    const capped = new ByteCounter({ limit: 6 });
    await expect(pipeline(chunks(4, 4), capped, sink())).rejects.toSatisfy((e: unknown) =>
      isLadingError(e, 'SIZE_MISMATCH'),
    );
    const custom = new ByteCounter({ limit: 6, overLimit: () => new Error('too big') });
    await expect(pipeline(chunks(4, 4), custom, sink())).rejects.toThrow('too big');
    const exact = new ByteCounter({ limit: 8 });
    await pipeline(chunks(4, 4), exact, sink());
    expect(exact.count).toBe(8);
  });

  it('fails with the error onChunk returns when it refuses a chunk', async () => {
    const seen: number[] = [];
    const counter = new ByteCounter({
      onChunk: (chunk, total) => {
        if (total > 5) return new Error('refused');
        seen.push(chunk.length);
        return undefined;
      },
    });
    await expect(pipeline(chunks(2, 2, 2, 2), counter, sink())).rejects.toThrow('refused');
    expect(seen).toEqual([2, 2]);
  });
});

describe('decompressionError', () => {
  it('types a gunzip failure INVALID_LAYER with what failed, and passes anything else', async () => {
    const bad = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff]);
    const raw = await pipeline(Readable.from([bad]), createDecompressor('gzip'), sink()).then(
      () => undefined,
      (e: unknown) => e,
    );
    const typed = decompressionError(raw, 'layer sha256:ab');
    expect(isLadingError(typed, 'INVALID_LAYER')).toBe(true);
    expect((typed as Error).message).toMatch(/^layer sha256:ab does not decompress: \S/);
    expect((typed as Error).cause).toBe(raw);
    // zstd's codes (Node ≥ 22.15), by shape: this Node may have no zstd.
    const zstd = Object.assign(new Error('Data corruption detected'), {
      code: 'ZSTD_error_corruption_detected',
    });
    expect(isLadingError(decompressionError(zstd, 'a layer'), 'INVALID_LAYER')).toBe(true);
    const other = Object.assign(new Error('disk full'), { code: 'ENOSPC' });
    expect(decompressionError(other, 'a layer')).toBe(other);
    expect(decompressionError(undefined, 'a layer')).toBeUndefined();
  });
});
