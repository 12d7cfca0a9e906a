import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, fileSystemError, LadingError } from '@lading/core';
import { AuthError } from './errors.js';

/**
 * Credentials authenticate against a registry: a username and password
 * (basic, or exchanged for a bearer token), an OAuth2 identity (refresh)
 * token, or a ready-made registry bearer token.
 */
export type Credentials =
  | { readonly username: string; readonly password: string }
  | { readonly identityToken: string; readonly username?: string }
  | { readonly registryToken: string };

/** CredentialLookupOptions say where {@link resolveCredentials} looks. */
export interface CredentialLookupOptions {
  /** env replaces process.env (DOCKER_CONFIG, REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR, HOME). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly signal?: AbortSignal | undefined;
}

type AuthEntry = {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  registrytoken?: string;
};

type ConfigFileShape = {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
};

/**
 * readCredentialsFile reads one credentials file (a docker `config.json`,
 * podman's `auth.json`) as {@link resolveCredentials} does, for a tool that
 * edits it (`lading auth login`): undefined when the file is missing or
 * empty (or a parent is not a directory). A file that is there but cannot
 * be read, or is not a JSON object, fails, as it does in crane and podman:
 * silently pushing anonymously would hide the mistake behind a later 401.
 * The JSON parser's own message is never shown, since it quotes the file's
 * text.
 * @throws IO (a LocalPathError), INVALID_ARGUMENT
 */
export async function readCredentialsFile(
  path: string,
  signal?: AbortSignal,
): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(path, { encoding: 'utf8', signal });
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw fileSystemError(err, path, 'reading credentials');
  }
  // docker reads an empty file as an empty config
  if (text.trim() === '') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new LadingError(
      ErrorCode.InvalidArgument,
      `credentials file ${path} is not a JSON object; fix or remove it`,
    );
  }
  return parsed as Record<string, unknown>;
}

/**
 * dockerConfigPath is the docker config file: `$DOCKER_CONFIG/config.json`,
 * else `~/.docker/config.json` (`env` replaces process.env).
 */
export function dockerConfigPath(
  env: Readonly<Record<string, string | undefined>> = process.env,
): string {
  const dir =
    env.DOCKER_CONFIG !== undefined && env.DOCKER_CONFIG !== ''
      ? env.DOCKER_CONFIG
      : join(env.HOME ?? homedir(), '.docker');
  return join(dir, 'config.json');
}

/** hub names: docker stores Docker Hub credentials under its v1 index URL. */
const hubKeys = [
  'https://index.docker.io/v1/',
  'index.docker.io',
  'docker.io',
  'registry-1.docker.io',
];

function keysFor(registry: string): string[] {
  if (hubKeys.includes(registry)) return hubKeys;
  return [registry];
}

function normaliseKey(key: string): string {
  let k = key.replace(/^https?:\/\//, '');
  const slash = k.indexOf('/');
  if (slash >= 0) k = k.slice(0, slash);
  return k;
}

function fromEntry(entry: AuthEntry): Credentials | undefined {
  if (entry.registrytoken !== undefined && entry.registrytoken !== '') {
    return { registryToken: entry.registrytoken };
  }
  let username = entry.username;
  let password = entry.password;
  if (entry.auth !== undefined && entry.auth !== '') {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) {
      username = decoded.slice(0, colon);
      password = decoded.slice(colon + 1);
    }
  }
  if (entry.identitytoken !== undefined && entry.identitytoken !== '') {
    return username === undefined
      ? { identityToken: entry.identitytoken }
      : { identityToken: entry.identitytoken, username };
  }
  if (username !== undefined && password !== undefined && username !== '') {
    return { username, password };
  }
  return undefined;
}

/**
 * runCredentialHelper runs `docker-credential-<name> get` with the server
 * URL on stdin and reads `{ Username, Secret }`; a `<token>` username means
 * the secret is an identity token. Resolves undefined when the helper knows
 * no credentials for the server.
 * @throws UNAUTHORIZED when the helper cannot be run or answers garbage.
 */
export async function runCredentialHelper(
  name: string,
  server: string,
  options: CredentialLookupOptions = {},
): Promise<Credentials | undefined> {
  const env = { ...process.env, ...options.env };
  const program = `docker-credential-${name}`;
  // Loaded on first use: most lookups never run a helper, and node:child_process
  // costs every `lading` command a few milliseconds of start-up.
  const { spawn } = await import('node:child_process');
  const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
    (resolve, reject) => {
      const child = spawn(program, ['get'], {
        stdio: ['pipe', 'pipe', 'pipe'],
        env,
        signal: options.signal,
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
      child.once('error', reject);
      child.once('close', (code) => {
        resolve({ code, stdout, stderr });
      });
      child.stdin.end(server);
    },
  ).catch((err: unknown) => {
    throw new AuthError('UNAUTHORIZED', `credential helper ${program} could not be run`, err);
  });
  if (out.code !== 0) {
    if (/credentials not found/i.test(out.stdout + out.stderr)) return undefined;
    throw new AuthError(
      'UNAUTHORIZED',
      `credential helper ${program} failed with exit code ${String(out.code)}`,
    );
  }
  let parsed: { Username?: unknown; Secret?: unknown };
  try {
    parsed = JSON.parse(out.stdout) as { Username?: unknown; Secret?: unknown };
  } catch {
    // (no cause: the parser's message quotes what the helper printed, a secret)
    throw new AuthError('UNAUTHORIZED', `credential helper ${program} printed invalid JSON`);
  }
  if (typeof parsed.Secret !== 'string' || parsed.Secret === '') return undefined;
  const username = typeof parsed.Username === 'string' ? parsed.Username : '';
  if (username === '<token>') return { identityToken: parsed.Secret };
  return { username, password: parsed.Secret };
}

async function fromFile(
  path: string,
  registry: string,
  options: CredentialLookupOptions,
  helpers: boolean,
): Promise<Credentials | undefined> {
  const file = (await readCredentialsFile(path, options.signal)) as ConfigFileShape | undefined;
  if (file === undefined) return undefined;
  const keys = keysFor(registry);
  if (helpers && file.credHelpers !== undefined) {
    for (const k of keys) {
      const helper = file.credHelpers[k];
      if (helper !== undefined && helper !== '') {
        return runCredentialHelper(
          helper,
          k === 'index.docker.io' || k === 'docker.io' ? (hubKeys[0] ?? k) : k,
          options,
        );
      }
    }
  }
  if (file.auths !== undefined) {
    for (const [key, entry] of Object.entries(file.auths)) {
      if (!keys.includes(key) && !keys.includes(normaliseKey(key))) continue;
      const creds = fromEntry(entry);
      if (creds !== undefined) return creds;
    }
  }
  if (helpers && file.credsStore !== undefined && file.credsStore !== '') {
    return runCredentialHelper(
      file.credsStore,
      hubKeys.includes(registry) ? (hubKeys[0] ?? registry) : registry,
      options,
    );
  }
  return undefined;
}

/**
 * resolveCredentials finds stored credentials for a registry host the way
 * docker and podman do, first match wins: `$REGISTRY_AUTH_FILE`, then
 * `${XDG_RUNTIME_DIR}/containers/auth.json` (podman), then
 * `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` (with
 * `credHelpers`, `auths` — `auth`, `username`/`password`, `identitytoken` —
 * and `credsStore`).
 */
export async function resolveCredentials(
  registry: string,
  options: CredentialLookupOptions = {},
): Promise<Credentials | undefined> {
  const env = options.env ?? process.env;
  const files: [string, boolean][] = [];
  if (env.REGISTRY_AUTH_FILE !== undefined && env.REGISTRY_AUTH_FILE !== '') {
    files.push([env.REGISTRY_AUTH_FILE, true]);
  }
  if (env.XDG_RUNTIME_DIR !== undefined && env.XDG_RUNTIME_DIR !== '') {
    files.push([join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'), true]);
  }
  files.push([dockerConfigPath(env), true]);
  for (const [path, helpers] of files) {
    const creds = await fromFile(path, registry, options, helpers);
    if (creds !== undefined) return creds;
  }
  return undefined;
}
