import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { splitUrl } from './internal/http.js';

/**
 * HttpLimits bound what one client can hold of the server: time to send
 * headers and bodies, idle sockets and connection counts. Times are in
 * seconds; 0 turns a limit off.
 */
export interface HttpLimits {
  /**
   * headersTimeout closes a connection whose request headers have not all
   * arrived this long after it opened or after its previous request
   * (default 20): header trickling (slowloris) and silent sockets.
   */
  readonly headersTimeout?: number | undefined;
  /**
   * requestTimeout closes a connection whose request is not fully received
   * this long after its headers, except upload bodies (PATCH/PUT on a
   * session, POST with a body), which only {@link HttpLimits.bodyTimeout}
   * bounds so that large uploads are never capped (default 60).
   */
  readonly requestTimeout?: number | undefined;
  /**
   * bodyTimeout closes a connection whose request body brings fewer than
   * {@link HttpLimits.bodyMinBytes} bytes in a window this long while the
   * registry is waiting for them (default 30): body trickling. Time the
   * registry itself spends writing to slow storage does not count.
   */
  readonly bodyTimeout?: number | undefined;
  /** bodyMinBytes is how many bytes a body must bring per bodyTimeout window (default 1024). */
  readonly bodyMinBytes?: number | undefined;
  /**
   * idleTimeout closes a connection with no traffic either way for this
   * long while a request is being served (default 120): a client that stops
   * reading a download. Only for {@link Registry.listen}'s server.
   */
  readonly idleTimeout?: number | undefined;
  /** keepAliveTimeout closes idle keep-alive connections after this long (default 5). */
  readonly keepAliveTimeout?: number | undefined;
  /** maxConnections caps open connections (default 1024); more are closed on accept. */
  readonly maxConnections?: number | undefined;
  /** maxConnectionsPerClient caps open connections per client address (default 128). */
  readonly maxConnectionsPerClient?: number | undefined;
}

/** ResolvedHttpLimits are {@link HttpLimits} with defaults applied, in milliseconds. */
export interface ResolvedHttpLimits {
  readonly headersMs: number;
  readonly requestMs: number;
  readonly bodyMs: number;
  readonly bodyMinBytes: number;
  readonly idleMs: number;
  readonly keepAliveMs: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerClient: number;
}

function seconds(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v < 0) throw new RangeError(`${name} must be a number ≥ 0`);
  return Math.round(v * 1000);
}

function count(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`${name} must be an integer ≥ 0`);
  return v === 0 ? Number.POSITIVE_INFINITY : v;
}

/** resolveHttpLimits applies the defaults of {@link HttpLimits}. */
export function resolveHttpLimits(limits: HttpLimits = {}): ResolvedHttpLimits {
  return {
    headersMs: seconds(limits.headersTimeout, 20, 'headersTimeout'),
    requestMs: seconds(limits.requestTimeout, 60, 'requestTimeout'),
    bodyMs: seconds(limits.bodyTimeout, 30, 'bodyTimeout'),
    bodyMinBytes: count(limits.bodyMinBytes, 1024, 'bodyMinBytes'),
    idleMs: seconds(limits.idleTimeout, 120, 'idleTimeout'),
    keepAliveMs: seconds(limits.keepAliveTimeout, 5, 'keepAliveTimeout'),
    maxConnections: count(limits.maxConnections, 1024, 'maxConnections'),
    maxConnectionsPerClient: count(limits.maxConnectionsPerClient, 128, 'maxConnectionsPerClient'),
  };
}

const uploadPath = /\/blobs\/uploads(?:\/[^/]*)?$/;

function isUploadBody(req: IncomingMessage): boolean {
  const m = req.method;
  // The path only: a query that mentions /blobs/uploads/ makes no upload.
  return (m === 'PATCH' || m === 'PUT' || m === 'POST') && uploadPath.test(splitUrl(req.url).path);
}

/**
 * guardRequest arms the per-request timers of `limits` on `req`: the
 * request timeout for everything but upload bodies, and the body-progress
 * check for every body. Both destroy the socket when they fire and are
 * cleared when the exchange ends.
 */
export function guardRequest(
  req: IncomingMessage,
  res: ServerResponse,
  limits: ResolvedHttpLimits,
): void {
  if (req.complete) return;
  const socket = req.socket;
  const timers: NodeJS.Timeout[] = [];
  const clear = (): void => {
    for (const t of timers) clearTimeout(t);
    timers.length = 0;
  };
  req.once('end', clear);
  res.once('close', clear);
  if (limits.requestMs > 0 && !isUploadBody(req)) {
    timers.push(
      setTimeout(() => {
        if (!req.complete) socket.destroy();
      }, limits.requestMs).unref(),
    );
  }
  if (limits.bodyMs > 0 && Number.isFinite(limits.bodyMinBytes)) {
    let seen = socket.bytesRead;
    const check = (): void => {
      if (req.complete || socket.destroyed) return;
      const now = socket.bytesRead;
      // Bytes waiting in our buffers mean the registry (its storage) is the
      // slow side, not the client: that window does not count.
      const backlog = socket.readableLength > 0 || req.readableLength > 0;
      if (!backlog && now - seen < limits.bodyMinBytes) {
        socket.destroy();
        return;
      }
      seen = now;
      timers.push(setTimeout(check, limits.bodyMs).unref());
    };
    timers.push(setTimeout(check, limits.bodyMs).unref());
  }
}

/**
 * createLimitedServer is a node:http server for `handler` with the
 * connection limits, header, idle and keep-alive timeouts of `limits`.
 */
export function createLimitedServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  limits: ResolvedHttpLimits,
): Server {
  const server = createServer(
    {
      // Node's requestTimeout would also cap uploads: guardRequest does it per request kind.
      requestTimeout: 0,
      headersTimeout: limits.headersMs,
      keepAliveTimeout: limits.keepAliveMs,
      // How often Node checks headersTimeout (its default, 30 s, is coarser than the limit).
      connectionsCheckingInterval: Math.max(100, Math.min(30_000, limits.headersMs / 4 || 30_000)),
    },
    (req, res) => {
      // A request is under way: from here the idle timeout (and, while the
      // body arrives, guardRequest) apply instead of the connect-time one.
      req.socket.setTimeout(limits.idleMs);
      handler(req, res);
    },
  );
  if (Number.isFinite(limits.maxConnections)) server.maxConnections = limits.maxConnections;
  const perClient = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const key = socket.remoteAddress ?? '';
    const n = (perClient.get(key) ?? 0) + 1;
    if (n > limits.maxConnectionsPerClient) {
      socket.destroy();
      return;
    }
    perClient.set(key, n);
    socket.once('close', () => {
      const left = (perClient.get(key) ?? 1) - 1;
      if (left <= 0) perClient.delete(key);
      else perClient.set(key, left);
    });
    // A socket that never sends a request: Node's own headers check answers
    // it 408 and closes it, but only at its next pass (connectionsCheckingInterval);
    // this closes it at the limit itself, whichever comes first.
    if (limits.headersMs > 0) socket.setTimeout(limits.headersMs);
  });
  return server;
}
