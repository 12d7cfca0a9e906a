import { Readable } from 'node:stream';

async function* skipGen(
  body: Readable,
  start: number,
  end: number | undefined,
): AsyncGenerator<Buffer> {
  let pos = 0;
  for await (const c of body) {
    const b = c as Buffer;
    const from = Math.max(0, start - pos);
    const to = end === undefined ? b.length : Math.min(b.length, end + 1 - pos);
    if (to > from) yield b.subarray(from, to);
    pos += b.length;
    if (end !== undefined && pos > end) break;
  }
}

/**
 * skipTo cuts bytes [start, end] (inclusive) out of a full body, for a
 * server that ignored a Range request.
 */
export function skipTo(body: Readable, start: number, end: number | undefined): Readable {
  return Readable.from(skipGen(body, start, end), { objectMode: false });
}
