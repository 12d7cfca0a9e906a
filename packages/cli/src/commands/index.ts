import type { Command } from './types.js';

export type { Command, CommandContext } from './types.js';

/** CommandLoader imports a command's module only when the command runs. */
export type CommandLoader = () => Promise<Command>;

// Each entry is a lazy import(): `lading --version` and `--help` load none
// of @lading/core, remote, layers, layout or registry.
/** commands maps each subcommand name to a loader of its implementation. */
export const commands: Readonly<Record<string, CommandLoader | undefined>> = {
  build: async () => (await import('./build.js')).build,
  append: async () => (await import('./build.js')).append,
  cp: async () => (await import('./copy.js')).cp,
  copy: async () => (await import('./copy.js')).cp,
  push: async () => (await import('./copy.js')).push,
  pull: async () => (await import('./copy.js')).pull,
  digest: async () => (await import('./inspect.js')).digest,
  manifest: async () => (await import('./inspect.js')).manifest,
  config: async () => (await import('./inspect.js')).config,
  ls: async () => (await import('./inspect.js')).ls,
  tags: async () => (await import('./inspect.js')).ls,
  catalog: async () => (await import('./inspect.js')).catalog,
  auth: async () => (await import('./auth.js')).auth,
  tag: async () => (await import('./verbs.js')).tag,
  delete: async () => (await import('./verbs.js')).del,
  blob: async () => (await import('./verbs.js')).blob,
  mutate: async () => (await import('./verbs.js')).mutate,
  export: async () => (await import('./verbs.js')).exportFs,
  validate: async () => (await import('./verbs.js')).validate,
  index: async () => (await import('./artifacts.js')).index,
  attach: async () => (await import('./artifacts.js')).attach,
  discover: async () => (await import('./artifacts.js')).discover,
  serve: async () => (await import('./serve.js')).serve,
};
