import { Readable } from 'node:stream';
import { AbortedError, ErrorCode, LadingError, type Layer } from '@lading/core';
import {
  encodeTarHeader,
  tarPadding,
  tarTrailer,
  type TarName,
  type TarType,
} from '@lading/core/internal';
import { RawNames, asName, isAscii } from './internal/tar-check.js';
import { owners, tarEntries, type EntryHeader } from './internal/tar-entries.js';

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

function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

/** The entry types flatten writes, as tar-stream names them. */
const types: Readonly<Record<string, TarType>> = {
  file: 'file',
  'contiguous-file': 'file',
  link: 'link',
  symlink: 'symlink',
  'character-device': 'character-device',
  'block-device': 'block-device',
  directory: 'directory',
  fifo: 'fifo',
};

/** Header fields flatten writes itself: not copied from the entry's PAX records. */
const ownRecords = new Set(['path', 'linkpath', 'size', 'uid', 'gid', 'uname', 'gname']);

/**
 * tarName is a byte-string name as encodeTarHeader takes it: text when its
 * bytes are UTF-8, else the bytes.
 */
function tarName(s: string): TarName {
  return isAscii(s) ? s : asName(Buffer.from(s, 'latin1'));
}

/** extras are the entry's PAX records flatten copies, with their bytes. */
function extras(h: EntryHeader, names: RawNames): Record<string, string | Buffer> {
  const pax: Record<string, string | Buffer> = {};
  for (const [k, v] of Object.entries(h.pax ?? {}))
    if (!ownRecords.has(k)) pax[k] = names.record(k, v);
  return pax;
}

/** header is the tar header flatten writes for `h` under `name`. */
function header(
  h: EntryHeader,
  name: string,
  linkname: string | undefined,
  pax: Record<string, string | Buffer>,
): Buffer {
  const type = h.type === null ? undefined : types[h.type];
  if (type === undefined) {
    throw new LadingError(
      ErrorCode.Unsupported,
      `cannot flatten ${JSON.stringify(h.name)}: an entry of unknown type (a GNU sparse file?)`,
    );
  }
  return encodeTarHeader({
    name: tarName(type === 'directory' ? `${name}/` : name),
    type,
    mode: h.mode,
    ...owners(h),
    size: type === 'directory' ? 0 : h.size,
    mtime: Math.floor(h.mtime.getTime() / 1000),
    ...(linkname === undefined ? {} : { linkname: tarName(linkname) }),
    devmajor: h.devmajor,
    devminor: h.devminor,
    pax,
  });
}

/**
 * flatChunks yields the flattened tar. Names are byte strings (one char
 * per byte, as extract keeps them), so a name that is not UTF-8 is matched
 * and written by its bytes.
 */
async function* flatChunks(
  layers: readonly Layer[],
  signal: AbortSignal | undefined,
): AsyncGenerator<Buffer> {
  const upper = new Upper();
  // The top layer decides first: walk the layers from the last to the first.
  for (let i = layers.length - 1; i >= 0; i--) {
    const layer = layers[i];
    if (layer === undefined) continue;
    if (signal?.aborted === true) throw new AbortedError(signal.reason);
    const mine = new Upper();
    const names = new RawNames(true);
    const source = layer.uncompressed();
    const onAbort = () => {
      source.destroy(new AbortedError(signal?.reason));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const entry of tarEntries(source, names)) {
        if (aborted(signal)) throw new AbortedError(signal?.reason);
        const h = entry.header;
        // Every name is looked up, in header order, before anything is skipped.
        const name = clean(names.bytes(h.name));
        const linkname = h.linkname == null ? undefined : names.bytes(h.linkname);
        const sparseName = h.pax?.['GNU.sparse.name'];
        if (sparseName !== undefined) names.bytes(sparseName);
        const pax = extras(h, names);
        const base = name.slice(name.lastIndexOf('/') + 1);
        if (name === '' || base === opaqueMarker || base.startsWith(whiteoutPrefix)) {
          if (base === opaqueMarker) mine.opaque(parentOf(name));
          else if (base.startsWith(whiteoutPrefix)) {
            const dir = parentOf(name);
            const target = base.slice(whiteoutPrefix.length);
            mine.delete(dir === '' ? target : `${dir}/${target}`);
          }
          continue;
        }
        if (upper.hides(name)) continue;
        mine.see(name, h.type === 'directory');
        yield header(h, name, linkname, pax);
        if (h.type === 'directory') continue;
        for await (const chunk of entry) yield chunk;
        const pad = tarPadding(h.size);
        if (pad > 0) yield Buffer.alloc(pad);
      }
    } catch (err) {
      if (err instanceof LadingError) throw err;
      throw new LadingError(
        aborted(signal) ? ErrorCode.Aborted : ErrorCode.Io,
        `flattening layer ${i}: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    upper.merge(mine);
  }
  yield tarTrailer;
}

/**
 * flatten streams the filesystem an image's layers add up to as one tar:
 * whiteouts (`.wh.NAME`) delete lower entries, opaque markers
 * (`.wh..wh..opq`) hide a directory's lower contents, and an upper entry
 * replaces a lower one of the same name. Layers are read one at a time,
 * top first; no file content is held in memory (only the set of names).
 * Entries come out in top-layer-first order.
 * Names keep their bytes, UTF-8 or not; an entry's other PAX records
 * (extended attributes, times) are copied as tar-stream decodes them.
 * @throws (on the stream) IO, ABORTED, UNSUPPORTED for an entry type it
 *   cannot write (a GNU sparse `S` entry), and whatever the layers throw.
 * @see https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts
 */
export function flatten(layers: readonly Layer[], options: FlattenOptions = {}): Readable {
  return Readable.from(flatChunks(layers, options.signal), { objectMode: false });
}
