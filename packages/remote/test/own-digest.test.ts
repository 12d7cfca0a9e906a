import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestOf, isLadingError, type Digest } from '@lading/core';
import { markDigesting } from '@lading/core/internal';
import { createRegistry, memoryStorage, type Registry } from '@lading/registry';
import { RegistryClient } from '../src/index.js';

/** A source that says, once it has ended, that its bytes are `stated` (true or not). */
function stating(data: Buffer, stated: () => Promise<{ digest: Digest; size: number }>): Readable {
  return markDigesting(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), stated);
}

describe('BlobUpload.upload of a source that hashes its own bytes', () => {
  let registry: Registry;
  let client: RegistryClient;
  beforeAll(async () => {
    registry = createRegistry({ storage: memoryStorage() });
    const { port } = await registry.listen({ host: '127.0.0.1', port: 0 });
    client = new RegistryClient(`127.0.0.1:${port}`, { useStoredCredentials: false, retry: false });
  });
  afterAll(async () => {
    await registry.close();
  });

  it('commits with the digest the source states when it marked itself as digesting', async () => {
    const data = randomBytes(5000);
    const digest = digestOf(data);
    const session = await client.openUpload('own/right');
    const result = await session.upload(
      stating(data, () => Promise.resolve({ digest, size: data.length })),
    );
    expect(result).toEqual({ digest, size: data.length });
    const back = await buffer(await client.getBlob('own/right', digest, { size: data.length }));
    expect(back.equals(data)).toBe(true);
  });

  it('sends the stated digest without hashing the bytes again (the registry catches a false one)', async () => {
    const data = randomBytes(5000);
    const wrong = digestOf(Buffer.from('something else'));
    const session = await client.openUpload('own/wrong');
    const err = await session
      .upload(stating(data, () => Promise.resolve({ digest: wrong, size: data.length })))
      .catch((e: unknown) => e);
    // Hashing here would have committed the true digest instead.
    expect(isLadingError(err, 'REGISTRY_ERROR')).toBe(true);
    expect(await client.headBlob('own/wrong', wrong)).toBeUndefined();
    expect(await client.headBlob('own/wrong', digestOf(data))).toBeUndefined();
  });

  it('commits nothing when the source fails to state its digest', async () => {
    const data = randomBytes(5000);
    const session = await client.openUpload('own/failing');
    const err = await session
      .upload(stating(data, () => Promise.reject(new Error('the pass failed'))))
      .catch((e: unknown) => e);
    expect((err as Error).message).toBe('the pass failed');
    expect(await client.headBlob('own/failing', digestOf(data))).toBeUndefined();
  });

  it('fails with UPLOAD_FAILED, committing nothing, when the stated size differs from the bytes sent', async () => {
    const data = randomBytes(5000);
    const digest = digestOf(data);
    const session = await client.openUpload('own/short');
    const err = await session
      .upload(stating(data, () => Promise.resolve({ digest, size: data.length + 1 })))
      .catch((e: unknown) => e);
    expect(isLadingError(err, 'UPLOAD_FAILED')).toBe(true);
    expect(await client.headBlob('own/short', digest)).toBeUndefined();
  });
});
