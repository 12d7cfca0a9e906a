import type { ServerResponse } from 'node:http';
import type { BlobFile } from '../storage/types.js';

/** The size of each read, and of the buffers it reads into. */
const chunkSize = 1024 * 1024;

/** At most this many free 1 MiB buffers are kept between responses. */
const maxFree = 8;
const free: Buffer[] = [];

function take(size: number): Buffer {
  if (size < chunkSize) return Buffer.allocUnsafe(size);
  return free.pop() ?? Buffer.allocUnsafeSlow(chunkSize);
}

function giveBack(b: Buffer): void {
  if (b.length === chunkSize && free.length < maxFree) free.push(b);
}

/**
 * sendFile writes `length` bytes of `file` from `start` as the body of
 * `res` (its head already written) and ends it. It reads into two buffers
 * in turn, each reused once the socket has taken what was written from it,
 * so a blob costs two buffers instead of a fresh one per read: fewer
 * allocations and collections per byte served. It resolves once the body
 * is written, and rejects when the file fails or comes short, or the
 * response closes first (the client went away); the caller closes `file`.
 */
export async function sendFile(
  res: ServerResponse,
  file: BlobFile,
  start: number,
  length: number,
): Promise<void> {
  const size = Math.min(chunkSize, length);
  // Each buffer with the write last made from it, which must finish before
  // the buffer is read into again.
  let slot = { buffer: take(size), written: Promise.resolve() };
  let other = { buffer: take(size), written: Promise.resolve() };
  let closed!: (err: Error) => void;
  const closing = new Promise<never>((_, reject) => {
    closed = reject;
  });
  closing.catch(() => undefined);
  const onClose = () => {
    closed(new Error('the response closed before the blob was sent'));
  };
  res.once('close', onClose);
  let settled = false;
  try {
    let pos = start;
    const end = start + length;
    for (; pos < end; [slot, other] = [other, slot]) {
      const b = slot.buffer;
      await Promise.race([slot.written, closing]);
      const { bytesRead } = await Promise.race([
        file.read(b, 0, Math.min(b.length, end - pos), pos),
        closing,
      ]);
      if (bytesRead === 0) throw new Error(`the blob ended ${end - pos} bytes short`);
      pos += bytesRead;
      slot.written = new Promise<void>((resolve, reject) => {
        res.write(b.subarray(0, bytesRead), (err) => {
          if (err) reject(err);
          else resolve();
        });
      });
      slot.written.catch(() => undefined);
    }
    await Promise.race([Promise.all([slot.written, other.written]), closing]);
    settled = true;
    res.end();
  } finally {
    res.off('close', onClose);
    // A buffer a failed response may still hold is left to the collector.
    if (settled) for (const { buffer } of [slot, other]) giveBack(buffer);
  }
}
