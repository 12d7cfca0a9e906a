import type { Readable } from 'node:stream';
import { extract as tarExtract, type Header } from 'tar-stream';
import { completeTar, type RawNames } from './tar-check.js';

/**
 * EntryHeader is a header as tar-stream really gives it (its own types say
 * less): no type for a GNU sparse or unknown entry, no link target for
 * most, the entry's PAX records when it had some.
 */
export type EntryHeader = Omit<Header, 'type' | 'linkname' | 'pax'> & {
  readonly type: Header['type'] | null;
  readonly linkname: string | null;
  readonly pax?: Readonly<Record<string, string>> | null;
};

/** TarEntry is what tar-stream's extractor yields: a (streamx) byte stream with its header. */
export interface TarEntry extends AsyncIterable<Buffer> {
  readonly header: EntryHeader;
  resume(): unknown;
}

/**
 * tarEntries reads a tar stream's entries with tar-stream, one at a time:
 * whatever of an entry's body the consumer left unread is skipped when it
 * asks for the next. Like the peers it reads a layer that ends right after
 * its last entry's data (umoci 0.4.7 writes these) by adding the padding
 * and end blocks; `names` gets the bytes of names that are not UTF-8.
 * Stopping early, or a failure, destroys `source`.
 */
export async function* tarEntries(source: Readable, names?: RawNames): AsyncGenerator<TarEntry> {
  const ex = tarExtract();
  // tar-stream's extractor is a streamx Writable; feed it by hand with
  // backpressure (node's pipeline does not see it finish).
  const feeding = (async () => {
    for await (const chunk of completeTar(source as AsyncIterable<Buffer>, names)) {
      if (!ex.write(chunk)) {
        await new Promise<void>((resolve) => {
          ex.once('drain', () => {
            resolve();
          });
        });
      }
    }
    (ex as unknown as { end(): void }).end();
  })();
  feeding.catch((e: unknown) => {
    ex.destroy(e as Error);
  });
  let done = false;
  try {
    for await (const entry of ex) {
      yield entry as unknown as TarEntry;
      entry.resume();
    }
    await feeding;
    done = true;
  } finally {
    if (!done) {
      source.destroy();
      ex.destroy();
    }
  }
}

/** paxNumber reads a PAX record holding a whole number. */
function paxNumber(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * owners are an entry's owner ids and names: tar-stream applies a PAX
 * path, linkpath and size to its header, not these, so ids past ustar's
 * 2 097 151 and long names are taken from the PAX records here.
 */
export function owners(h: EntryHeader): { uid: number; gid: number; uname: string; gname: string } {
  return {
    uid: paxNumber(h.pax?.uid) ?? h.uid,
    gid: paxNumber(h.pax?.gid) ?? h.gid,
    uname: h.pax?.uname ?? h.uname,
    gname: h.pax?.gname ?? h.gname,
  };
}
