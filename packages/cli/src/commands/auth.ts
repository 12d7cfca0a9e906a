import { Readable } from 'node:stream';
import { dirname } from 'node:path';
import { makeDirectory, writeOutputFile } from '@lading/core/internal';
import {
  checkPushPermission,
  dockerConfigPath,
  readCredentialsFile,
  RegistryClient,
} from '@lading/remote';
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

type DockerConfig = {
  auths?: Record<string, { auth?: string; [k: string]: unknown }>;
  [k: string]: unknown;
};

// Read as every registry lookup reads it (a malformed file fails, unquoted).
async function readConfig(signal: AbortSignal): Promise<DockerConfig> {
  return (await readCredentialsFile(dockerConfigPath(), signal)) ?? {};
}

// A new config is private (0600) in a private directory, as docker makes it;
// an existing one keeps its mode, and a symlinked one stays a link.
async function writeConfig(config: DockerConfig, signal: AbortSignal): Promise<void> {
  const path = dockerConfigPath();
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
    { registry, stored: dockerConfigPath() },
    `credentials for ${registry} stored in ${dockerConfigPath()}`,
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
