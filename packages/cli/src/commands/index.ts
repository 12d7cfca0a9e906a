import { auth } from './auth.js';
import { build } from './build.js';
import { cp, pull, push } from './copy.js';
import { catalog, config, digest, ls, manifest } from './inspect.js';
import { serve } from './serve.js';
import type { Command } from './types.js';

export type { Command, CommandContext } from './types.js';

/** commands maps each subcommand name to its implementation. */
export const commands: Readonly<Record<string, Command | undefined>> = {
  build,
  cp,
  copy: cp,
  push,
  pull,
  digest,
  manifest,
  config,
  ls,
  tags: ls,
  catalog,
  auth,
  serve,
};
