import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { main } from '../src/index.js';

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

describe('lading serve --storage s3://', () => {
  it('answers a one-line usage error (exit 2) when the bucket is missing', async () => {
    const stdout = new Sink();
    const stderr = new Sink();
    const code = await main(['serve', '--port', '0', '--storage', 's3://'], { stdout, stderr });
    expect(code).toBe(2);
    expect(stderr.text).toContain('s3://BUCKET[/PREFIX]');
    expect(stdout.text).toBe('');
  });

  it('documents the S3 options in its help', async () => {
    const stdout = new Sink();
    const stderr = new Sink();
    const code = await main(['serve', '--help'], { stdout, stderr });
    expect(code).toBe(0);
    expect(stdout.text + stderr.text).toMatch(/--storage s3:\/\/BUCKET\[\/PREFIX\]/);
    expect(stdout.text + stderr.text).toContain('--s3-endpoint');
  });
});
