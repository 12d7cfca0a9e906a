import type { Dispatcher } from 'undici';
import { Agent } from './internal/transport/undici.js';
import { Transport, type TransportOptions } from './internal/transport/transport.js';

/**
 * SessionOptions configure a {@link RemoteSession}: where credentials come
 * from, scheme and TLS, the connection pool, timeouts and retries.
 */
export type SessionOptions = TransportOptions;

// Connections carry no credentials, so sessions that do not ask for their
// own pool (ca, connections or dispatcher) share this one.
let sharedAgent: Agent | undefined;

function ownAgent(options: SessionOptions): Agent | undefined {
  if (options.dispatcher !== undefined) return undefined;
  if (options.ca === undefined && options.connections === undefined) return undefined;
  const ca = options.ca;
  return new Agent({
    connections: options.connections ?? 16,
    ...(ca === undefined
      ? {}
      : {
          connect: {
            ca: Array.isArray(ca) ? [...(ca as (string | Buffer)[])] : (ca as string | Buffer),
          },
        }),
  });
}

/**
 * RemoteSession is what registry calls share: per registry host, the
 * credentials looked up, the `/v2/` ping and its challenge, and bearer
 * tokens by scope; plus the connection pool. Sharing is decided by which
 * session a call uses, never by options objects.
 *
 * Every {@link write}, {@link writeIndex}, {@link pull}, {@link checkPushPermission},
 * {@link registryTarget} and {@link RegistryClient} without a `session`
 * option builds its own, from the transport options it was given, and
 * shares it only with what it calls itself (an index's children, a pulled
 * image's layer reads). Pass one session to several calls to share
 * tokens and the ping on purpose; its options then decide credentials,
 * scheme, TLS, timeouts and retries, and those options of the calls are
 * not consulted.
 */
export class RemoteSession {
  readonly #options: SessionOptions;
  readonly #dispatcher: Dispatcher;
  readonly #owned: Agent | undefined;
  readonly #transports = new Map<string, Transport>();

  constructor(options: SessionOptions = {}) {
    this.#options = options;
    this.#owned = ownAgent(options);
    this.#dispatcher =
      options.dispatcher ?? this.#owned ?? (sharedAgent ??= new Agent({ connections: 16 }));
  }

  /** dispatcher is the undici connection pool requests of this session use. */
  get dispatcher(): Dispatcher {
    return this.#dispatcher;
  }

  /** @internal transport is this session's transport to `registry`, made on first use. */
  transport(registry: string): Transport {
    let t = this.#transports.get(registry);
    if (t === undefined) {
      t = new Transport(registry, this.#options, this.#dispatcher);
      this.#transports.set(registry, t);
    }
    return t;
  }

  /**
   * close closes the connection pool this session built for itself (from
   * `ca` or `connections`); a given `dispatcher` or the shared default pool
   * stays open. Tokens are forgotten.
   */
  async close(): Promise<void> {
    this.#transports.clear();
    await this.#owned?.close();
  }
}

/** createSession makes a {@link RemoteSession} to share between calls on purpose. */
export function createSession(options: SessionOptions = {}): RemoteSession {
  return new RemoteSession(options);
}

/** sessionOf is the session a call uses: the one it was given, or a new one from its options. */
export function sessionOf(
  options: TransportOptions & { readonly session?: RemoteSession | undefined },
): RemoteSession {
  return options.session ?? new RemoteSession(options);
}
