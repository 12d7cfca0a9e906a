import type { ParseArgsConfig } from 'node:util';
import type { Output } from '../output.js';

/** CommandContext is what every command receives. */
export interface CommandContext {
  readonly values: Readonly<Record<string, string | boolean | string[] | undefined>>;
  readonly positionals: readonly string[];
  readonly out: Output;
  readonly signal: AbortSignal;
  readonly stdin: NodeJS.ReadableStream;
  /** stdout is where commands that stream bytes (blob, export) write them. */
  readonly stdout: NodeJS.WritableStream;
}

/** Command is one `lading` subcommand. */
export interface Command {
  readonly usage: string;
  readonly options: NonNullable<ParseArgsConfig['options']>;
  /** positionals is how many operands the command takes at most (unset: any number). */
  readonly positionals?: number;
  run(ctx: CommandContext): Promise<void>;
}
