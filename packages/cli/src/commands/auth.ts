import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { Readable } from 'node:stream';
import { dirname, join } from 'node:path';
import { ErrorCode, fileSystemError, LadingError } from '@lading/core';
import { makeDirectory, writeOutputFile } from '@lading/core/internal';
import { checkPushPermission, RegistryClient } from '@lading/remote';
import { UsageError } from '../exit.js';
import { now, positional, remoteOptions, seconds } from './common.js';
import type { Command, CommandContext } from './types.js';

const usage = `Usage: lading auth check REF
       lading auth login REGISTRY -u USER (-p PASS | --password-stdin)
       lading auth logout REGISTRY

check opens (and cancels) an upload session on REF's repository: exit 0 when
you may push, 3 when the registry refuses. login verifies the credentials and
stores them in the docker config ($DOCKER_CONFIG/config.json, else
~/.docker/config.json); logout removes them.`;

function configPath(): string {
  const dir = process.env.DOCKER_CONFIG;
  return join(dir !== undefined && dir !== '' ? dir : join(homedir(), '.docker'), 'config.json');
}

type DockerConfig = {
  auths?: Record<string, { auth?: string; [k: string]: unknown }>;
  [k: string]: unknown;
};

// The parser's message is never shown: it quotes the file, credentials and all.
async function readConfig(signal: AbortSignal): Promise<DockerConfig> {
  const path = configPath();
  let text: string;
  try {
    text = await readFile(path, { encoding: 'utf8', signal });
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return {};
    throw fileSystemError(err, path);
  }
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new LadingError(
      ErrorCode.InvalidArgument,
      `credentials file ${path} is not a JSON object; fix or remove it`,
    );
  return parsed as DockerConfig;
}

// A new config is private (0600) in a private directory, as docker makes it;
// an existing one keeps its mode, and a symlinked one stays a link.
async function writeConfig(config: DockerConfig, signal: AbortSignal): Promise<void> {
  const path = configPath();
  await makeDirectory(dirname(path), 0o700);
  const text = `${JSON.stringify(config, null, 2)}\n`;
  await writeOutputFile(path, Readable.from([Buffer.from(text)]), signal, 0o600);
}

async function check(ctx: CommandContext): Promise<void> {
  const start = now();
  const ref = positional(ctx, 1, 'REF', usage);
  await checkPushPermission(ref, await remoteOptions(ctx));
  ctx.out.result(
    { reference: ref, push: true, seconds: seconds(start) },
    `push to ${ref} permitted (${seconds(start)} s)`,
  );
}

async function login(ctx: CommandContext): Promise<void> {
  const registry = positional(ctx, 1, 'REGISTRY', usage);
  const options = await remoteOptions(ctx);
  if (options.auth === undefined || !('password' in options.auth))
    throw new UsageError('login needs --username and --password (or --password-stdin)', usage);
  const { username, password } = options.auth;
  const config = await readConfig(ctx.signal);
  // Verify before storing, as docker login does: GET /v2/ with these credentials.
  await new RegistryClient(registry, {
    ...options,
    useStoredCredentials: false,
  }).verifyCredentials({
    signal: ctx.signal,
  });
  config.auths = {
    ...config.auths,
    [registry]: { auth: Buffer.from(`${username}:${password}`).toString('base64') },
  };
  await writeConfig(config, ctx.signal);
  ctx.out.result(
    { registry, stored: configPath() },
    `credentials for ${registry} stored in ${configPath()}`,
  );
}

async function logout(ctx: CommandContext): Promise<void> {
  const registry = positional(ctx, 1, 'REGISTRY', usage);
  const config = await readConfig(ctx.signal);
  if (config.auths?.[registry] === undefined) {
    // As `docker logout`: not logged in is not a failure.
    ctx.out.result({ registry, removed: false }, `no stored credentials for ${registry}`);
    return;
  }
  const { [registry]: _removed, ...rest } = config.auths;
  config.auths = rest;
  await writeConfig(config, ctx.signal);
  ctx.out.result({ registry, removed: true }, `credentials for ${registry} removed`);
}

/** auth is `lading auth check|login|logout`. */
export const auth: Command = {
  positionals: 2,
  usage,
  options: { registry: { type: 'string' } },
  run: async (ctx) => {
    const sub = ctx.positionals[0];
    if (sub === 'check') return check(ctx);
    if (sub === 'login') return login(ctx);
    if (sub === 'logout') return logout(ctx);
    throw new UsageError(
      sub === undefined
        ? 'auth needs a subcommand'
        : `unknown auth subcommand ${JSON.stringify(sub)}`,
      usage,
    );
  },
};
