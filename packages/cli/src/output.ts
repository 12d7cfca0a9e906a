import type * as CliProgress from 'cli-progress';
import type { ProgressEvent } from '@lading/core';
import { sanitize } from './exit.js';

type CliProgressModule = typeof CliProgress;

/** OutputMode is how results and progress are shown. */
export type OutputMode = 'tty' | 'plain' | 'json' | 'quiet';

/** Output prints progress and results the way the user asked. */
export class Output {
  readonly mode: OutputMode;
  readonly #stdout: NodeJS.WritableStream;
  readonly #stderr: NodeJS.WritableStream;
  #lib: CliProgressModule | undefined;
  #bars: CliProgress.MultiBar | undefined;
  readonly #barById = new Map<string, CliProgress.SingleBar>();
  // Bars whose total is unknown: drawn as a moving block, never as full.
  readonly #unknownTotal = new Map<string, number>();
  readonly #lastPlain = new Map<string, number>();

  constructor(
    mode: OutputMode,
    stdout: NodeJS.WritableStream = process.stdout,
    stderr: NodeJS.WritableStream = process.stderr,
  ) {
    this.mode = mode;
    this.#stdout = stdout;
    this.#stderr = stderr;
  }

  /**
   * prepare loads the progress bar library when bars will be drawn; it is
   * left out of start-up so `lading --version` stays fast.
   */
  async prepare(): Promise<void> {
    if (this.mode !== 'tty' || this.#lib !== undefined) return;
    const mod = (await import('cli-progress')) as CliProgressModule & {
      default?: CliProgressModule;
    };
    this.#lib = mod.default ?? mod;
  }

  /** progress is a listener for ProgressEmitter 'progress' events. */
  readonly progress = (event: ProgressEvent): void => {
    if (this.mode === 'tty') this.#tty(event);
    else if (this.mode === 'plain') this.#plain(event);
  };

  #tty(event: ProgressEvent): void {
    const lib = this.#lib;
    if (lib === undefined) return;
    // TTY mode is only chosen when stderr is a terminal.
    this.#bars ??= new lib.MultiBar(
      {
        format: ' {kind} {id} |{bar}| {value_h}/{total_h}',
        hideCursor: true,
        clearOnComplete: false,
        stream: this.#stderr,
        formatValue: (v, _o, type) => (type === 'value' || type === 'total' ? human(v) : String(v)),
      },
      lib.Presets.shades_classic,
    );
    const label = (id: string): string =>
      id
        .replace(/^sha256:/, '')
        .slice(0, 12)
        .padEnd(12);
    switch (event.type) {
      case 'blob-start': {
        const unknown = event.total === undefined;
        const bar = this.#bars.create(
          unknown ? 1 : (event.total ?? 0),
          0,
          {
            kind: event.kind.padEnd(6),
            id: label(event.id),
            value_h: '0 B',
            total_h: unknown ? '?' : human(event.total ?? 0),
            spinner: indeterminateBar(0),
          },
          unknown ? { format: ' {kind} {id} |{spinner}| {value_h}/{total_h}' } : {},
        );
        if (unknown) this.#unknownTotal.set(event.id, 0);
        this.#barById.set(event.id, bar);
        break;
      }
      case 'blob-progress': {
        const bar = this.#barById.get(event.id);
        const tick = this.#unknownTotal.get(event.id);
        if (tick !== undefined) {
          // The total is unknown: move the block, keep the value at 0 of 1.
          this.#unknownTotal.set(event.id, tick + 1);
          bar?.update(0, { value_h: human(event.bytes), spinner: indeterminateBar(tick + 1) });
          break;
        }
        if (event.total !== undefined) bar?.setTotal(event.total);
        bar?.update(event.bytes, {
          value_h: human(event.bytes),
          total_h: event.total === undefined ? '?' : human(event.total),
        });
        break;
      }
      case 'blob-done': {
        const bar = this.#barById.get(event.id);
        if (this.#unknownTotal.delete(event.id))
          bar?.update(0, { spinner: '\u2588'.repeat(BAR_WIDTH) });
        bar?.setTotal(event.size);
        bar?.update(event.size, {
          value_h: human(event.size),
          total_h: human(event.size),
          id: label(event.digest),
        });
        break;
      }
      case 'blob-skipped':
      case 'blob-mounted':
        this.#bars.log(
          `  ${event.type === 'blob-skipped' ? 'exists ' : 'mounted'} ${event.digest}\n`,
        );
        break;
      default:
        break;
    }
  }

  #plain(event: ProgressEvent): void {
    switch (event.type) {
      case 'blob-done':
        this.#stderr.write(`${event.kind} ${event.digest} ${human(event.size)} done\n`);
        break;
      case 'blob-skipped':
        this.#stderr.write(`${event.kind} ${event.digest} exists\n`);
        break;
      case 'blob-mounted':
        this.#stderr.write(`blob ${event.digest} mounted from ${event.from}\n`);
        break;
      case 'blob-progress': {
        // Plain mode prints at most one line per 64 MiB per blob.
        const last = this.#lastPlain.get(event.id) ?? 0;
        if (event.bytes - last >= 64 * 1024 * 1024) {
          this.#lastPlain.set(event.id, event.bytes);
          this.#stderr.write(`${event.kind} ${event.id.slice(0, 19)} ${human(event.bytes)}\n`);
        }
        break;
      }
      case 'retry':
        this.#stderr.write(`retry ${event.id} in ${event.delayMs} ms: ${sanitize(event.reason)}\n`);
        break;
      default:
        break;
    }
  }

  /** stop ends any progress display. */
  stop(): void {
    this.#bars?.stop();
    this.#bars = undefined;
    this.#barById.clear();
    this.#unknownTotal.clear();
  }

  /** warn prints a warning on stderr (in every mode but quiet). */
  warn(line: string): void {
    if (this.mode === 'quiet') return;
    if (this.mode === 'json') this.#stderr.write(`${JSON.stringify({ warning: line })}\n`);
    else this.#stderr.write(`lading: warning: ${sanitize(line)}\n`);
  }

  /** info prints a human line on stderr (not in json or quiet mode). */
  info(line: string): void {
    if (this.mode === 'tty' || this.mode === 'plain') this.#stderr.write(`${sanitize(line)}\n`);
  }

  /**
   * result prints the command's result: JSON in json mode, `text` otherwise
   * (without terminal control characters: it may hold registry-supplied names).
   */
  result(value: unknown, text: string): void {
    this.stop();
    if (this.mode === 'json') this.#stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    else if (text !== '') {
      const clean = sanitize(text, true);
      this.#stdout.write(clean.endsWith('\n') ? clean : `${clean}\n`);
    }
  }

  /**
   * error prints one line (and an optional one-line hint) on stderr; in json
   * mode one JSON object with `error`, `code` and `hint` (null when there is none).
   */
  error(message: string, hint?: string, code?: string): void {
    this.stop();
    const line = sanitize(message);
    const oneHint = hint === undefined ? undefined : sanitize(hint.split('\n')[0] ?? '');
    if (this.mode === 'json') {
      this.#stderr.write(`${JSON.stringify({ error: line, code, hint: oneHint ?? null })}\n`);
      return;
    }
    this.#stderr.write(`lading: ${line}\n`);
    if (oneHint !== undefined && oneHint !== '') this.#stderr.write(`hint: ${oneHint}\n`);
  }
}

const BAR_WIDTH = 40;

/**
 * indeterminateBar draws a progress bar whose total is unknown: a short
 * block that moves back and forth with `tick`, never a full bar.
 */
export function indeterminateBar(tick: number, width = BAR_WIDTH): string {
  const block = Math.max(1, Math.floor(width / 5));
  const span = width - block;
  const period = span * 2;
  const p = period === 0 ? 0 : tick % period;
  const start = p <= span ? p : period - p;
  return '\u2591'.repeat(start) + '\u2588'.repeat(block) + '\u2591'.repeat(span - start);
}

/** human formats a byte count. */
export function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? String(v) : v.toFixed(1)} ${units[i] ?? 'B'}`;
}
