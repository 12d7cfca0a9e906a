import { parseArgs, type ParseArgsConfig } from 'node:util';
import {
  ExitCode,
  UsageError,
  classify,
  describe,
  errorCode,
  redact,
  sanitize,
  typed,
} from './exit.js';
import { Output, type OutputMode } from './output.js';
import { commands, type CommandContext } from './commands/index.js';

const globalOptions = {
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  insecure: { type: 'boolean' },
  username: { type: 'string', short: 'u' },
  password: { type: 'string', short: 'p' },
  'password-stdin': { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

/** usage is the top-level help. */
export const usage = `lading — build and move container images without a daemon

Usage: lading <command> [options]

Commands:
  build [DIR] [--layer DIR[:DEST]]... -t LOCATION...
                              build an image (one layer per directory) and write it
  append BASE DST --layer DIR[:DEST]...
                              add layers to an existing image
  cp SRC DST                  copy an image between locations
  push SRC REF                copy a local image (oci:/docker-archive:) to a registry
  pull REF DST                copy an image from a registry to a local location
  tag SRC TAG...              point more tags at a manifest (no blob moves)
  delete LOCATION             delete a manifest (or a layout tag)
  blob LOCATION@DIGEST        stream one blob to stdout (or -o FILE)
  mutate SRC [-t DST]...      edit config and annotations, layers untouched
  export LOCATION FILE|-      the flattened filesystem as one tar
  validate LOCATION           check every digest, size and media type
  index create|append DST SRC...
                              build or extend a multi-platform index
  attach SUBJECT --artifact-type T FILE...
                              push an OCI 1.1 artifact referring to SUBJECT
  discover SUBJECT            list the artifacts referring to SUBJECT
  digest LOCATION             print the manifest digest
  manifest LOCATION           print the manifest
  config LOCATION             print the image config
  ls REPOSITORY               list tags
  catalog REGISTRY            list repositories
  auth check REF              exit 0 if you may push to REF
  auth login REGISTRY         store credentials in the docker config
  auth logout REGISTRY        remove stored credentials
  serve                       run the embedded registry

Locations: a registry reference (host[:port]/repo[:tag|@digest]),
oci:DIR[:TAG|@DIGEST], docker-archive:FILE[:TAG]. lading COMMAND --help
shows a command's options.

Global options: --json, --quiet, --debug, --insecure, -u/--username,
-p/--password, --password-stdin, -h/--help.

Exit codes: 0 ok, 1 failure, 2 usage, 3 auth, 4 not found, 5 network,
130 interrupted (Ctrl-C).`;

/** main runs the CLI and returns the exit code (it never throws). */
export async function main(
  argv: readonly string[],
  io: {
    stdout?: NodeJS.WritableStream;
    stderr?: NodeJS.WritableStream;
    stdin?: NodeJS.ReadableStream;
  } = {},
): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const debug = argv.includes('--debug');
  const json = argv.includes('--json');
  const quiet = argv.includes('--quiet') || argv.includes('-q');
  const isTty = 'isTTY' in stderr && stderr.isTTY && process.env.CI === undefined;
  const mode: OutputMode = json ? 'json' : quiet ? 'quiet' : isTty ? 'tty' : 'plain';
  const out = new Output(mode, stdout, stderr);
  const controller = new AbortController();
  // The first Ctrl-C aborts through the signal: upload sessions are
  // cancelled, no manifest or tag is written and partial files are removed.
  // A second one gets Node's default (immediate exit).
  let interrupted: 'SIGINT' | 'SIGTERM' | undefined;
  const onSignal = (sig: 'SIGINT' | 'SIGTERM'): void => {
    interrupted ??= sig;
    controller.abort(new Error(sig === 'SIGINT' ? 'interrupted' : 'terminated'));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const [name, ...rest] = argv;
  try {
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      out.result({ usage }, usage);
      return name === undefined ? ExitCode.Usage : ExitCode.Ok;
    }
    if (name === '--version' || name === 'version') {
      out.result({ version: '0.1.0' }, '0.1.0');
      return ExitCode.Ok;
    }
    const load = commands[name];
    if (load === undefined)
      throw new UsageError(
        `unknown command ${JSON.stringify(name)}`,
        'lading --help lists the commands',
      );
    const command = await load();
    let parsed;
    try {
      parsed = parseArgs({
        args: rest,
        options: { ...globalOptions, ...command.options },
        allowPositionals: true,
        strict: true,
      });
    } catch (err) {
      throw new UsageError(
        `${name}: ${(err as Error).message.replace(/\. To specify.*$/s, '')}`,
        `lading ${name} --help`,
      );
    }
    if (parsed.values.help === true) {
      out.result({ usage: command.usage }, command.usage);
      return ExitCode.Ok;
    }
    // Node decodes arguments as UTF-8: bytes that are not become U+FFFD,
    // and a path or tag so altered would be written somewhere else.
    const mangled = rest.find((a) => a.includes('\uFFFD'));
    if (mangled !== undefined)
      throw new UsageError(
        `${name}: argument ${JSON.stringify(mangled)} is not valid UTF-8 (Node cannot pass its bytes)`,
        'rename the path, or give it through a directory whose name is UTF-8',
      );
    const extra = parsed.positionals[command.positionals ?? Infinity];
    if (extra !== undefined)
      throw new UsageError(`${name}: unexpected argument ${JSON.stringify(extra)}`, command.usage);
    const values: Readonly<Record<string, unknown>> = parsed.values;
    if (['password', 'src-password', 'dest-password'].some((k) => typeof values[k] === 'string'))
      out.warn(
        'a password given with -p/--password is visible to other users and kept in shell history; use --password-stdin',
      );
    await out.prepare();
    const ctx: CommandContext = {
      values: parsed.values,
      positionals: parsed.positionals,
      out,
      signal: controller.signal,
      stdin: io.stdin ?? process.stdin,
      stdout,
    };
    await command.run(ctx);
    return ExitCode.Ok;
  } catch (caught) {
    if (interrupted !== undefined) {
      out.error(interrupted === 'SIGINT' ? 'interrupted' : 'terminated', undefined, 'ABORTED');
      return interrupted === 'SIGINT' ? ExitCode.Interrupted : ExitCode.Terminated;
    }
    const err = await typed(caught);
    const { code, hint } = classify(err);
    // Hints are one line: a usage text is replaced by a pointer to it.
    const oneLine =
      hint?.includes('\n') === true
        ? `lading ${name !== undefined && commands[name] !== undefined ? `${name} ` : ''}--help shows the usage`
        : hint;
    out.error(describe(err), oneLine, errorCode(err));
    if (debug && err instanceof Error) {
      // The stacks carry what the other side said: no terminal escapes and
      // no credentials, as in the one-line error.
      const stacks = `${err.stack ?? ''}\n${err.cause instanceof Error ? `cause: ${err.cause.stack ?? ''}\n` : ''}`;
      stderr.write(redact(sanitize(stacks, true)));
    }
    return code;
  } finally {
    out.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * compileDeflate compiles libdeflate's WebAssembly module now (the layer
 * compression workers take it from this thread), so that bin/start.js can
 * then keep V8's optimizing wasm tier off for what compiles after it:
 * undici's HTTP parser, whose background tier-up Node waits for at exit
 * (~0.09 s on a small build). A module keeps the tiers it was compiled
 * with: libdeflate still tiers up.
 */
export async function compileDeflate(): Promise<void> {
  const { libdeflateModule } = await import('@lading/core/internal');
  libdeflateModule();
}
