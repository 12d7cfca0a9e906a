import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer as createNetServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestOf, layerFromBytes } from '@lading/core';
import { startDistributionRegistry, type DistributionRegistry } from '@lading/testing';
import { RegistryClient, RemoteSession, write } from '../src/index.js';
import { httpsRegistry, testImage, type HttpsRegistry } from './helpers.js';

/**
 * undici closes a connection after each HEAD unless told otherwise, so the
 * request after every HEAD paid a new connection (over https, a handshake).
 * These tests count connections while a client asks HEADs (blobs present
 * and absent, a manifest) and then GETs.
 */

const missing = digestOf(new TextEncoder().encode('never pushed'));

async function headsThenGet(client: RegistryClient, repo: string): Promise<void> {
  const image = testImage([layerFromBytes(Buffer.from('kept alive'))]);
  const [layer] = await image.layers();
  const layerDigest = await layer!.digest();
  expect(await client.headBlob(repo, layerDigest)).toMatchObject({ digest: layerDigest });
  expect(await client.headBlob(repo, missing)).toBeUndefined();
  expect(await client.headManifest(repo, 'v1')).toMatchObject({ digest: await image.digest() });
  expect(await client.headManifest(repo, 'absent')).toBeUndefined();
  expect(await client.headBlob(repo, layerDigest)).toMatchObject({ digest: layerDigest });
  const got = await client.getManifest(repo, 'v1');
  expect(got.digest).toBe(await image.digest());
}

describe('HEAD keeps its connection', () => {
  let https: HttpsRegistry;
  let httpsHost: string;
  let ca: Buffer;
  let handshakes = 0;
  let distribution: DistributionRegistry;
  beforeAll(async () => {
    https = await httpsRegistry('lading-head-');
    ({ host: httpsHost, ca } = https);
    https.server.on('secureConnection', () => handshakes++);
    distribution = await startDistributionRegistry();
  });
  afterAll(async () => {
    try {
      await https.close();
    } finally {
      await distribution.stop();
    }
  });

  it('over https: five HEADs and a GET take one TLS handshake', async () => {
    const options = { scheme: 'https' as const, ca, useStoredCredentials: false };
    const image = testImage([layerFromBytes(Buffer.from('kept alive'))]);
    await write(`${httpsHost}/keep/app:v1`, image, options).done;
    const session = new RemoteSession(options);
    try {
      const before = handshakes;
      await headsThenGet(new RegistryClient(httpsHost, { ...options, session }), 'keep/app');
      expect(handshakes - before).toBe(1);
    } finally {
      await session.close();
    }
  });

  it('against the CNCF registry: five HEADs and a GET on one connection', async () => {
    const image = testImage([layerFromBytes(Buffer.from('kept alive'))]);
    await write(`${distribution.host}/keep/app:v1`, image).done;
    let connected = 0;
    const onConnect = (): void => {
      connected++;
    };
    subscribe('undici:client:connected', onConnect);
    const session = new RemoteSession({ connections: 4 });
    try {
      await headsThenGet(
        new RegistryClient(distribution.host, { session, useStoredCredentials: false }),
        'keep/app',
      );
      expect(connected).toBe(1);
    } finally {
      unsubscribe('undici:client:connected', onConnect);
      await session.close();
    }
  });

  it('a server that answers HEAD with a body costs a connection, not a wrong answer', async () => {
    // Answers HEAD with a 5-byte body it should not send; GET with a manifest.
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: missing,
        size: 12,
      },
      layers: [],
    });
    const manifestDigest = digestOf(new TextEncoder().encode(manifest));
    let connections = 0;
    const server: Server = createNetServer((socket) => {
      connections++;
      let buffered = '';
      socket.on('data', (d: Buffer) => {
        buffered += d.toString('latin1');
        let end;
        while ((end = buffered.indexOf('\r\n\r\n')) >= 0) {
          const head = buffered.slice(0, end);
          buffered = buffered.slice(end + 4);
          const [method, path] = head.split(' ');
          if (path === '/v2/') {
            socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}');
          } else if (method === 'HEAD' && path?.includes('/blobs/')) {
            socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello');
          } else if (method === 'GET' && path?.includes('/manifests/')) {
            socket.write(
              `HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n` +
                `Docker-Content-Digest: ${manifestDigest}\r\nContent-Length: ${manifest.length}\r\n\r\n${manifest}`,
            );
          } else {
            socket.write('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
          }
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const session = new RemoteSession({ connections: 2, retry: false });
    try {
      const client = new RegistryClient(host, { session, useStoredCredentials: false });
      for (let i = 0; i < 3; i++) {
        expect(await client.headBlob('odd/app', missing)).toMatchObject({ size: 5 });
      }
      const got = await client.getManifest('odd/app', 'v1');
      expect(got.digest).toBe(manifestDigest);
      expect(Buffer.from(got.bytes).toString()).toBe(manifest);
      expect(connections).toBeGreaterThan(1);
    } finally {
      await session.close();
      await new Promise((r) => server.close(r));
    }
  });
});
