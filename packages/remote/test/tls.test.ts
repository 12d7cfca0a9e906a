import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isLadingError, layerFromBytes } from '@lading/core';
import { createRegistry, memoryStorage } from '@lading/registry';
import { recordingProxy } from '@lading/testing';
import { RegistryClient, checkPushPermission, pullImage, write } from '../src/index.js';
import { httpsRegistry, testImage, type HttpsRegistry } from './helpers.js';

describe('TLS with a custom CA (@lading/registry behind node:https)', () => {
  let https: HttpsRegistry;
  let host: string;
  let ca: Buffer;
  beforeAll(async () => {
    https = await httpsRegistry('lading-tls-');
    ({ host, ca } = https);
  });
  afterAll(async () => {
    await https.close();
  });

  it('pushes and pulls over https when the CA is given', async () => {
    const options = { scheme: 'https' as const, ca, useStoredCredentials: false };
    await checkPushPermission(`${host}/tls/app:1`, options);
    const image = testImage([layerFromBytes(Buffer.from('over tls'))]);
    const result = await write(`${host}/tls/app:1`, image, options).done;
    expect(await (await pullImage(`${host}/tls/app:1`, options)).digest()).toBe(result.digest);
  });

  it('fails with a non-temporary NETWORK error when the certificate is not trusted', async () => {
    const err = await new RegistryClient(host, { scheme: 'https', useStoredCredentials: false })
      .ping()
      .catch((e: unknown) => e);
    expect(isLadingError(err, 'NETWORK')).toBe(true);
    expect((err as { temporary?: boolean }).temporary).toBe(false);
  });
});

describe('user agent', () => {
  it('sends the configured User-Agent', async () => {
    const registry = createRegistry({ storage: memoryStorage() });
    const { url } = await registry.listen({ host: '127.0.0.1', port: 0 });
    const proxy = await recordingProxy(url);
    try {
      await new RegistryClient(proxy.host, {
        userAgent: 'my-builder/2.0',
        useStoredCredentials: false,
      }).ping();
      expect(proxy.requests[0]!.headers['user-agent']).toBe('my-builder/2.0');
    } finally {
      await proxy.close();
      await registry.close();
    }
  });
});
