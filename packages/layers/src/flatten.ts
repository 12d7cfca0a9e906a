import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract as tarExtract, pack as tarPack, type Header, type Pack } from 'tar-stream';
import { AbortedError, ErrorCode, LadingError, type Layer } from '@lading/core';

/** FlattenOptions configure {@link flatten}. */
export interface FlattenOptions {
  readonly signal?: AbortSignal | undefined;
}

const opaqueMarker = '.wh..wh..opq';
const whiteoutPrefix = '.wh.';

// Names are compared without a leading "./" or "/" and without a trailing "/".
function clean(name: string): string {
  let n = name.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
  n = n.replace(/\/\.\//g, '/').replace(/\/{2,}/g, '/');
  return n === '.' ? '' : n;
}

function parentOf(name: string): string {
  const i = name.lastIndexOf('/');
  return i < 0 ? '' : name.slice(0, i);
}

function* ancestors(name: string): Generator<string> {
  for (let p = parentOf(name); p !== ''; p = parentOf(p)) yield p;
}

/**
 * Upper is what the layers above the current one decided: the paths they
 * hold (and whether each is a directory), the paths they deleted and the
 * directories they made opaque. A lower entry shows only when none of these
 * hides it.
 */
class Upper {
  readonly #seen = new Map<string, boolean>();
  readonly #deleted = new Set<string>();
  readonly #opaque = new Set<string>();

  hides(name: string): boolean {
    if (this.#deleted.has(name)) return true;
    const seenDir = this.#seen.get(name);
    if (seenDir !== undefined) return true;
    for (const a of ancestors(name)) {
      if (this.#deleted.has(a) || this.#opaque.has(a)) return true;
      // An upper non-directory replaced a lower directory.
      if (this.#seen.get(a) === false) return true;
    }
    return false;
  }

  /** merge adds one finished layer's decisions, which apply to the layers below it. */
  merge(layer: Upper): void {
    for (const [k, v] of layer.#seen) if (!this.#seen.has(k)) this.#seen.set(k, v);
    for (const d of layer.#deleted) this.#deleted.add(d);
    for (const o of layer.#opaque) this.#opaque.add(o);
  }

  see(name: string, isDir: boolean): void {
    this.#seen.set(name, isDir);
  }
  delete(name: string): void {
    this.#deleted.add(name);
  }
  opaque(dir: string): void {
    this.#opaque.add(dir);
  }
}

async function emit(pack: Pack, header: Header, body: Readable): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const sink = pack.entry(header, (err) => {
      if (err) reject(err);
      else resolve();
    });
    pipeline(body, sink).catch(reject);
  });
}

function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

async function flattenInto(
  pack: Pack,
  layers: readonly Layer[],
  signal: AbortSignal | undefined,
): Promise<void> {
  const upper = new Upper();
  // The top layer decides first: walk the layers from the last to the first.
  for (let i = layers.length - 1; i >= 0; i--) {
    const layer = layers[i];
    if (layer === undefined) continue;
    if (signal?.aborted === true) throw new AbortedError(signal.reason);
    const mine = new Upper();
    const reader = tarExtract();
    const source = layer.uncompressed();
    const feeding = pipeline(source, reader, { signal }).catch((err: unknown) => {
      reader.destroy(err instanceof Error ? err : new Error(String(err)));
    });
    try {
      for await (const entry of reader) {
        const header = entry.header;
        const name = clean(header.name);
        const base = name.slice(name.lastIndexOf('/') + 1);
        if (name === '' || base === opaqueMarker || base.startsWith(whiteoutPrefix)) {
          if (base === opaqueMarker) mine.opaque(parentOf(name));
          else if (base.startsWith(whiteoutPrefix)) {
            const dir = parentOf(name);
            const target = base.slice(whiteoutPrefix.length);
            mine.delete(dir === '' ? target : `${dir}/${target}`);
          }
          entry.resume();
          continue;
        }
        if (upper.hides(name)) {
          entry.resume();
          continue;
        }
        mine.see(name, header.type === 'directory');
        await emit(
          pack,
          { ...header, name: header.type === 'directory' ? `${name}/` : name },
          entry as unknown as Readable,
        );
      }
      await feeding;
    } catch (err) {
      source.destroy();
      if (err instanceof LadingError) throw err;
      throw new LadingError(
        aborted(signal) ? ErrorCode.Aborted : ErrorCode.Io,
        `flattening layer ${i}: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
    upper.merge(mine);
  }
}

/**
 * flatten streams the filesystem an image's layers add up to as one tar:
 * whiteouts (`.wh.NAME`) delete lower entries, opaque markers
 * (`.wh..wh..opq`) hide a directory's lower contents, and an upper entry
 * replaces a lower one of the same name. Layers are read one at a time,
 * top first; no file content is held in memory (only the set of names).
 * Entries come out in top-layer-first order.
 * @throws (on the stream) IO, ABORTED and whatever the layers throw.
 * @see https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts
 */
export function flatten(layers: readonly Layer[], options: FlattenOptions = {}): Readable {
  const pack = tarPack();
  const out = new PassThrough();
  pipeline(pack, out).catch(() => undefined);
  flattenInto(pack, layers, options.signal).then(
    () => {
      pack.finalize();
    },
    (err: unknown) => {
      out.destroy(err instanceof Error ? err : new Error(String(err)));
      pack.destroy();
    },
  );
  return out;
}
