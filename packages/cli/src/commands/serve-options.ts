import { isIP } from 'node:net';
import { grantsFromFile, type GrantFunction, type RegistryOptions } from '@lading/registry';
import { fileSystemError } from '@lading/core';
import { UsageError } from '../exit.js';
import { flag, str } from './common.js';
import type { CommandContext } from './types.js';

/** serveHardeningUsage documents the flags of {@link serveHardeningOptions}. */
export const serveHardeningUsage = `
Access:
  --grants FILE     per-user, per-repository grants (JSON, see the registry README);
                    without it every authenticated user may pull and push
  --allow-delete    allow DELETE of manifests, tags and blobs (off by default)
  --token-realm URL token endpoint clients are sent to (default: this server's
                    /token, https when the request came over https); required
                    with --token on an address other than loopback
  --max-auth-failures N  failed logins per address or user per minute before 429 (default 10; 0: none)

Limits (0 turns one off):
  --max-upload-size SIZE         bytes per upload session, K/M/G suffixes (default 512M in memory, 16G on disk)
  --max-upload-bytes SIZE        bytes all open upload sessions hold together (default 512M in memory, no cap on disk)
  --max-upload-sessions N        open upload sessions (default 1024)
  --max-upload-sessions-per-client N  per user, or per address when anonymous (default 64)
  --upload-timeout SECONDS       cancel upload sessions idle this long (default 86400)
  --headers-timeout SECONDS      to receive request headers (default 20)
  --request-timeout SECONDS      to receive a request that is not an upload (default 60)
  --body-timeout SECONDS         a request body must bring 1 KiB per this window (default 30)
  --keep-alive-timeout SECONDS   idle keep-alive connections (default 5)
  --max-connections N            open connections (default 1024)
  --max-connections-per-client N open connections per address (default 128)`;

/** serveHardeningOptions are the parseArgs options behind {@link serveHardeningUsage}. */
export const serveHardeningOptions = {
  grants: { type: 'string' },
  'allow-delete': { type: 'boolean' },
  'token-realm': { type: 'string' },
  'max-auth-failures': { type: 'string' },
  'max-upload-size': { type: 'string' },
  'max-upload-bytes': { type: 'string' },
  'max-upload-sessions': { type: 'string' },
  'max-upload-sessions-per-client': { type: 'string' },
  'upload-timeout': { type: 'string' },
  'headers-timeout': { type: 'string' },
  'request-timeout': { type: 'string' },
  'body-timeout': { type: 'string' },
  'keep-alive-timeout': { type: 'string' },
  'max-connections': { type: 'string' },
  'max-connections-per-client': { type: 'string' },
} as const;

// With memory storage every upload (and every blob) sits in the heap: keep
// what open sessions may hold well under a small machine's memory.
const memoryUploadCap = 512 * 1024 ** 2;

function number(ctx: CommandContext, name: string, integer: boolean): number | undefined {
  const text = str(ctx, name);
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) {
    throw new UsageError(
      `--${name} wants ${integer ? 'an integer' : 'a number'} ≥ 0, got ${JSON.stringify(text)}`,
    );
  }
  return n;
}

function size(ctx: CommandContext, name: string): number | undefined {
  const text = str(ctx, name);
  if (text === undefined) return undefined;
  const m = /^(\d+)([KMG]i?B?)?$/i.exec(text.trim());
  if (m === null)
    throw new UsageError(`--${name} wants a size such as 512M, got ${JSON.stringify(text)}`);
  const unit = (m[2] ?? '').charAt(0).toUpperCase();
  const scale = unit === 'K' ? 1024 : unit === 'M' ? 1024 ** 2 : unit === 'G' ? 1024 ** 3 : 1;
  return Number(m[1]) * scale;
}

function loopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/**
 * optionFileError is a file named by a serve option (--htpasswd, --grants)
 * that cannot be read or parsed: a usage error (exit 2) that names the option
 * and the file, with the system error in words rather than Node's text.
 */
export function optionFileError(option: string, path: string, err: unknown): UsageError {
  if (path === '') return new UsageError(`--${option} needs a file name`);
  const e = err as { syscall?: unknown; code?: unknown } | null;
  const why =
    typeof e?.syscall === 'string'
      ? fileSystemError(err, path).message
      : `${path}: ${(err as Error).message}`;
  return new UsageError(`--${option} ${why}`, 'check the file named by the option');
}

/**
 * serveHardening turns the flags of {@link serveHardeningOptions} into
 * registry options.
 * @throws UsageError on malformed values, or --token on a non-loopback host without --token-realm
 */
export function serveHardening(
  ctx: CommandContext,
  context: { readonly memory: boolean; readonly token: boolean; readonly host: string },
): {
  options: Omit<RegistryOptions, 'storage' | 'auth'>;
  grants: GrantFunction | undefined;
  realm: string | undefined;
} {
  const realm = str(ctx, 'token-realm');
  if (realm !== undefined && !context.token) throw new UsageError('--token-realm needs --token');
  if (context.token && realm === undefined && !loopback(context.host)) {
    throw new UsageError(
      `--token on ${context.host} needs --token-realm`,
      'the registry cannot tell whether clients reach it over https; give the URL they use, e.g. https://registry.example/token',
    );
  }
  const grantsFile = str(ctx, 'grants');
  let grants: GrantFunction | undefined;
  if (grantsFile !== undefined) {
    try {
      grants = grantsFromFile(grantsFile);
    } catch (err) {
      throw optionFileError('grants', grantsFile, err);
    }
  }
  const failures = number(ctx, 'max-auth-failures', true);
  return {
    grants,
    realm,
    options: {
      deleteEnabled: flag(ctx, 'allow-delete'),
      authFailureLimit:
        failures === undefined
          ? undefined
          : failures === 0
            ? false
            : { count: failures, perSeconds: 60 },
      maxUploadSize: size(ctx, 'max-upload-size') ?? (context.memory ? memoryUploadCap : undefined),
      maxUploadBytes:
        size(ctx, 'max-upload-bytes') ?? (context.memory ? memoryUploadCap : undefined),
      maxUploadSessions: number(ctx, 'max-upload-sessions', true),
      maxUploadSessionsPerClient: number(ctx, 'max-upload-sessions-per-client', true),
      uploadTimeout: number(ctx, 'upload-timeout', false),
      http: {
        headersTimeout: number(ctx, 'headers-timeout', false),
        requestTimeout: number(ctx, 'request-timeout', false),
        bodyTimeout: number(ctx, 'body-timeout', false),
        keepAliveTimeout: number(ctx, 'keep-alive-timeout', false),
        maxConnections: number(ctx, 'max-connections', true),
        maxConnectionsPerClient: number(ctx, 'max-connections-per-client', true),
      },
    },
  };
}
