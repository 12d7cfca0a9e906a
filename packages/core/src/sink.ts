import { Writable } from 'node:stream';

/**
 * discardSink is a Writable that takes every chunk and keeps nothing: the
 * end of a pipeline read only for what its stages check or count (a
 * digest, a size, a decompression).
 */
export function discardSink(): Writable {
  return new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
}
