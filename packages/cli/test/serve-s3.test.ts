import { describe, expect, it } from 'vitest';
import { TextSink } from '@lading/testing';
import { main } from '../src/index.js';

describe('lading serve --storage s3://', () => {
  it('answers a one-line usage error (exit 2) when the bucket is missing', async () => {
    const stdout = new TextSink();
    const stderr = new TextSink();
    const code = await main(['serve', '--port', '0', '--storage', 's3://'], { stdout, stderr });
    expect(code).toBe(2);
    expect(stderr.text).toContain('s3://BUCKET[/PREFIX]');
    expect(stdout.text).toBe('');
  });

  it('documents the S3 options in its help', async () => {
    const stdout = new TextSink();
    const stderr = new TextSink();
    const code = await main(['serve', '--help'], { stdout, stderr });
    expect(code).toBe(0);
    expect(stdout.text + stderr.text).toMatch(/--storage s3:\/\/BUCKET\[\/PREFIX\]/);
    expect(stdout.text + stderr.text).toContain('--s3-endpoint');
  });
});
