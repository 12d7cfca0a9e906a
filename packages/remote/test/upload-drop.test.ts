import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isLadingError } from '@lading/core';
import { RegistryClient } from '../src/index.js';

// A registry that opens upload sessions and drops the connection as soon as
// a PATCH body starts to arrive.
function droppingRegistry(): Server {
  return createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/v2/') {
      res.writeHead(200, { 'content-length': '0' }).end();
    } else if (req.method === 'POST') {
      res.writeHead(202, { location: '/v2/drop/me/blobs/uploads/1', 'content-length': '0' }).end();
    } else if (req.method === 'PATCH') {
      req.once('data', () => req.socket.destroy());
    } else {
      res.writeHead(404, { 'content-length': '0' }).end();
    }
  });
}

describe('BlobUpload.upload', () => {
  let server: Server;
  let host: string;
  beforeAll(async () => {
    server = droppingRegistry();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${String((server.address() as AddressInfo).port)}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('fails with a typed temporary network error when the registry drops the connection mid-PATCH', async () => {
    const client = new RegistryClient(host, { useStoredCredentials: false, retry: false });
    const session = await client.openUpload('drop/me');
    let sourceDestroyed = false;
    const source = new Readable({
      read() {
        this.push(Buffer.alloc(64 * 1024, 1));
      },
      destroy(err, cb) {
        sourceDestroyed = true;
        cb(err);
      },
    });
    const err = await session.upload(source, { mode: 'stream' }).catch((e: unknown) => e);
    // The socket error is the request's failure, not the source's: it comes
    // back typed (so write() retries it and the CLI exits 5), never raw.
    expect(isLadingError(err, 'NETWORK')).toBe(true);
    expect(err).toMatchObject({ temporary: true });
    expect(sourceDestroyed).toBe(true);
  });
});
