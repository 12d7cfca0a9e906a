import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/** RecordedRequest is one request seen by a {@link RecordingProxy}. */
export interface RecordedRequest {
  /** index is the request's position in arrival order. */
  readonly index: number;
  readonly method: string;
  /** path is the path with its query string. */
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** startTick is a global sequence number taken when the request arrived. */
  readonly startTick: number;
  /** firstByteTick is the tick of the first request body byte (undefined: no body). */
  firstByteTick: number | undefined;
  /** endTick is the tick at which the request body ended. */
  endTick: number | undefined;
  /** responseTick is the tick at which the upstream answered. */
  responseTick: number | undefined;
  /** bodyBytes counts request body bytes. */
  bodyBytes: number;
  /** status is the upstream's answer. */
  status: number | undefined;
  /** responseHeaders are the upstream's response headers. */
  responseHeaders: IncomingHttpHeaders | undefined;
  /** responseBytes counts response body bytes. */
  responseBytes: number;
  /** startTime is performance.now() at arrival (for logs and figures, not for ordering assertions). */
  readonly startTime: number;
  /** firstByteTime is performance.now() at the first request body byte. */
  firstByteTime: number | undefined;
  /** endTime is performance.now() when the request body ended. */
  endTime: number | undefined;
  /** responseTime is performance.now() when the upstream answered. */
  responseTime: number | undefined;
}

/** RecordingProxy is a forwarding HTTP proxy that records everything it sees. */
export interface RecordingProxy {
  /** url is `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** host is `127.0.0.1:<port>`. */
  readonly host: string;
  readonly port: number;
  /** requests in arrival order. */
  readonly requests: RecordedRequest[];
  /** clear forgets what was recorded. */
  clear(): void;
  close(): Promise<void>;
}

/** RecordingProxyOptions configure {@link recordingProxy}. */
export interface RecordingProxyOptions {
  /**
   * hold runs as each request arrives, once it is recorded; the request is
   * forwarded when the promise it answers settles (at once for undefined).
   * Tests use it to keep a request pending until another has been seen.
   */
  readonly hold?: (req: RecordedRequest) => Promise<unknown> | undefined;
  /**
   * cut runs as each request arrives: a number makes the proxy pass on that
   * many bytes of the upstream's response body, then drop the connection
   * (a connection cut mid-body); undefined passes the whole answer.
   */
  readonly cut?: (req: RecordedRequest) => number | undefined;
}

/**
 * recordingProxy forwards every request to `upstreamUrl` (keeping the Host
 * header the client sent, so the upstream's absolute Locations point back at
 * the proxy) and records method, path, headers, byte counts and a global
 * tick sequence so tests can assert the order of events without timing.
 */
export async function recordingProxy(
  upstreamUrl: string,
  options: RecordingProxyOptions = {},
): Promise<RecordingProxy> {
  const upstream = new URL(upstreamUrl);
  const requests: RecordedRequest[] = [];
  let tick = 0;
  const server = createServer((req, res) => {
    const rec: RecordedRequest = {
      index: requests.length,
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: { ...req.headers },
      startTick: ++tick,
      firstByteTick: undefined,
      endTick: undefined,
      responseTick: undefined,
      bodyBytes: 0,
      status: undefined,
      responseHeaders: undefined,
      responseBytes: 0,
      startTime: performance.now(),
      firstByteTime: undefined,
      endTime: undefined,
      responseTime: undefined,
    };
    requests.push(rec);
    const cutAt = options.cut?.(rec);
    const forward = (): void => {
      const out = httpRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (upRes) => {
          rec.responseTick = ++tick;
          rec.responseTime = performance.now();
          rec.status = upRes.statusCode;
          rec.responseHeaders = { ...upRes.headers };
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          res.flushHeaders();
          upRes.on('data', (b: Buffer) => {
            if (cutAt !== undefined && rec.responseBytes + b.length >= cutAt) {
              res.write(b.subarray(0, cutAt - rec.responseBytes));
              rec.responseBytes = cutAt;
              upRes.destroy();
              setTimeout(() => res.socket?.destroy(), 20);
              return;
            }
            rec.responseBytes += b.length;
            res.write(b);
          });
          upRes.on('end', () => {
            res.end();
          });
          upRes.on('error', () => res.destroy());
        },
      );
      out.on('error', () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      req.on('data', (b: Buffer) => {
        if (b.length > 0 && rec.firstByteTick === undefined) {
          rec.firstByteTick = ++tick;
          rec.firstByteTime = performance.now();
        }
        rec.bodyBytes += b.length;
        out.write(b);
      });
      req.on('end', () => {
        rec.endTick = ++tick;
        rec.endTime = performance.now();
        out.end();
      });
      req.on('error', () => out.destroy());
      res.on('close', () => {
        if (!res.writableFinished) out.destroy();
      });
    };
    const held = options.hold?.(rec);
    if (held === undefined) forward();
    else void held.then(forward, forward);
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    requests,
    clear(): void {
      requests.length = 0;
    },
    close(): Promise<void> {
      return new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      });
    },
  };
}
