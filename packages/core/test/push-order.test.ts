import { describe, expect, it } from 'vitest';
import { isLadingError, layerFromBytes, type Layer } from '../src/index.js';
import { pushImageInOrder } from '../src/internal-api.js';

const layers = (n: number): Layer[] =>
  Array.from({ length: n }, (_, i) => layerFromBytes(Buffer.from(`layer ${i}`)));

describe('pushImageInOrder', () => {
  it('runs the config once every layer was read and the manifest last, at most `concurrency` layers at once', async () => {
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

  it('starts the config when the last layer is read, beside the layers still storing, and the manifest after both', async () => {
    const log: string[] = [];
    const stored: (() => void)[] = [];
    const push = pushImageInOrder(layers(3), {
      layer: async (_l, i, _signal, read) => {
        await new Promise((r) => setTimeout(r, 5 * (3 - i)));
        log.push(`read-${i}`);
        read();
        read(); // twice counts once
        // the registry still answering this layer's last request
        await new Promise<void>((resolve) => stored.push(resolve));
        log.push(`stored-${i}`);
      },
      config: () => {
        log.push('config');
        // the config is in before the layers are stored: let them finish
        for (const s of stored.splice(0)) s();
        return Promise.resolve();
      },
      manifest: () => {
        log.push('manifest');
        return Promise.resolve('done');
      },
    });
    expect(await push).toBe('done');
    expect(log.slice(0, 3).sort()).toEqual(['read-0', 'read-1', 'read-2']);
    expect(log[3]).toBe('config');
    expect(log.slice(4, 7).sort()).toEqual(['stored-0', 'stored-1', 'stored-2']);
    expect(log[7]).toBe('manifest');
  });

  it('does not start the config while a layer is unread, and writes no manifest when a layer fails after the config', async () => {
    const log: string[] = [];
    let failLast!: (e: Error) => void;
    const push = pushImageInOrder(layers(2), {
      layer: async (_l, i, signal, read) => {
        if (i === 0) {
          read();
          log.push('read-0');
          return;
        }
        // layer 1 is never read: it fails
        await new Promise<void>((_resolve, reject) => {
          failLast = reject;
          signal.addEventListener('abort', () => {
            reject(new Error('aborted'));
          });
        });
      },
      config: () => {
        log.push('config');
        return Promise.resolve();
      },
      manifest: () => {
        log.push('manifest');
        return Promise.resolve();
      },
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(log).toEqual(['read-0']);
    failLast(new Error('boom'));
    await expect(push).rejects.toThrow('boom');
    expect(log).toEqual(['read-0']);

    // read, then failed while storing: the config may be in, the manifest never
    const late = pushImageInOrder(layers(1), {
      layer: async (_l, _i, signal, read) => {
        read();
        await new Promise<void>((resolve) => {
          signal.addEventListener('abort', () => {
            resolve();
          });
        });
        throw new Error('refused');
      },
      config: () => Promise.reject(new Error('config refused')),
      manifest: () => {
        log.push('manifest');
        return Promise.resolve();
      },
    });
    await expect(late).rejects.toThrow('config refused');
    expect(log).toEqual(['read-0']);
  });

  it('aborts the other layers and writes neither config nor manifest when a layer fails unread', async () => {
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
