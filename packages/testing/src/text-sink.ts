import { Writable } from 'node:stream';

/** TextSink is a Writable that keeps what is written to it as text (a CLI's stdout or stderr). */
export class TextSink extends Writable {
  /** text is everything written so far. */
  text = '';

  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}
