import { describe, expect, it } from 'vitest';
import { isLadingError, layerFromBytes, type Layer } from '../src/index.js';
import { pushImageInOrder } from '../src/internal-api.js';

const layers = (n: number): Layer[] =>
  Array.from({ length: n }, (_, i) => layerFromBytes(Buffer.from(`layer ${i}`)));

describe('pushImageInOrder', () => {
  it('runs the config after every layer settled and the manifest last, at most `concurrency` layers at once', async () => {
    const log: string[] = [];
    let active = 0;
    let peak = 0;
    const result = await pushImageInOrder(
      layers(5),
      {
        layer: async (_l, i) => {
          active++;
          peak = Math.max(peak, active);
          await new Promise((r) => setTimeout(r, 5 * (5 - i)));
          active--;
          log.push(`layer-${i}`);
        },
        config: () => {
          log.push('config');
          return Promise.resolve();
        },
        manifest: () => {
          log.push('manifest');
          return Promise.resolve('done');
        },
      },
      { concurrency: 2 },
    );
    expect(result).toBe('done');
    expect(peak).toBe(2);
    expect(log.slice(0, 5).sort()).toEqual(['layer-0', 'layer-1', 'layer-2', 'layer-3', 'layer-4']);
    expect(log.slice(5)).toEqual(['config', 'manifest']);
  });

  it('aborts the other layers and writes neither config nor manifest when a layer fails', async () => {
    const aborted: number[] = [];
    let wrote = false;
    const failing = pushImageInOrder(layers(3), {
      layer: async (_l, i, signal) => {
        if (i === 0) throw new Error('boom');
        await new Promise<void>((resolve) => {
          signal.addEventListener('abort', () => {
            aborted.push(i);
            resolve();
          });
        });
      },
      config: () => {
        wrote = true;
        return Promise.resolve();
      },
      manifest: () => {
        wrote = true;
        return Promise.resolve();
      },
    });
    await expect(failing).rejects.toThrow('boom');
    expect(aborted.sort()).toEqual([1, 2]);
    expect(wrote).toBe(false);
  });

  it('throws ABORTED before any step when the signal is already aborted', async () => {
    let ran = false;
    const err = await pushImageInOrder(
      layers(1),
      {
        layer: () => {
          ran = true;
          return Promise.resolve();
        },
        config: () => Promise.resolve(),
        manifest: () => Promise.resolve(),
      },
      { signal: AbortSignal.abort() },
    ).catch((e: unknown) => e);
    expect(isLadingError(err, 'ABORTED')).toBe(true);
    expect(ran).toBe(false);
  });
});
