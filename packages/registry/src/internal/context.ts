import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Action, AccessNeed, Authenticator } from '../auth.js';
import type { UploadSessions } from '../sessions.js';
import type { RegistryStorage } from '../storage/types.js';

/**
 * RegistryContext is what every endpoint module shares: the storage, the
 * authenticator, the upload sessions and the resolved options.
 */
export interface RegistryContext {
  readonly storage: RegistryStorage;
  readonly auth: Authenticator;
  readonly sessions: UploadSessions;
  /** maxManifest caps manifest PUT bodies, in bytes. */
  readonly maxManifest: number;
  /** chunkMin is advertised as `OCI-Chunk-Min-Length`. */
  readonly chunkMin: number;
  readonly deleteEnabled: boolean;
  /** maxPage caps `n` on tags list and catalog. */
  readonly maxPage: number;
  /** log records a failure whose details clients do not see (RegistryOptions.onError). */
  readonly log: (err: unknown, req?: IncomingMessage) => void;
}

/** Call is one request being answered by an endpoint module. */
export interface Call {
  readonly ctx: RegistryContext;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly query: URLSearchParams;
}

/** repoNeed is the access a request needs to `actions` on repository `name`. */
export function repoNeed(name: string, ...actions: Action[]): AccessNeed {
  return { kind: 'repository', name, actions };
}
