import cliProgress from 'cli-progress';
import type { ProgressEvent } from '@lading/core';

/** OutputMode is how results and progress are shown. */
export type OutputMode = 'tty' | 'plain' | 'json' | 'quiet';

/** Output prints progress and results the way the user asked. */
export class Output {
  readonly mode: OutputMode;
  readonly #stdout: NodeJS.WritableStream;
  readonly #stderr: NodeJS.WritableStream;
  #bars: cliProgress.MultiBar | undefined;
  readonly #barById = new Map<string, cliProgress.SingleBar>();
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

  /** progress is a listener for ProgressEmitter 'progress' events. */
  readonly progress = (event: ProgressEvent): void => {
    if (this.mode === 'tty') this.#tty(event);
    else if (this.mode === 'plain') this.#plain(event);
  };

  #tty(event: ProgressEvent): void {
    // cli-progress writes to process.stderr; TTY mode is only chosen when that is a terminal.
    this.#bars ??= new cliProgress.MultiBar(
      {
        format: ' {kind} {id} |{bar}| {value_h}/{total_h}',
        hideCursor: true,
        clearOnComplete: false,
        formatValue: (v, _o, type) => (type === 'value' || type === 'total' ? human(v) : String(v)),
      },
      cliProgress.Presets.shades_classic,
    );
    const label = (id: string): string =>
      id
        .replace(/^sha256:/, '')
        .slice(0, 12)
        .padEnd(12);
    switch (event.type) {
      case 'blob-start': {
        const bar = this.#bars.create(event.total ?? 0, 0, {
          kind: event.kind.padEnd(6),
          id: label(event.id),
          value_h: '0 B',
          total_h: event.total === undefined ? '?' : human(event.total),
        });
        this.#barById.set(event.id, bar);
        break;
      }
      case 'blob-progress': {
        const bar = this.#barById.get(event.id);
        if (event.total !== undefined) bar?.setTotal(event.total);
        bar?.update(event.bytes, {
          value_h: human(event.bytes),
          total_h: event.total === undefined ? '?' : human(event.total),
        });
        break;
      }
      case 'blob-done': {
        const bar = this.#barById.get(event.id);
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
        this.#stderr.write(`retry ${event.id} in ${event.delayMs} ms: ${event.reason}\n`);
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
  }

  /** info prints a human line on stderr (not in json or quiet mode). */
  info(line: string): void {
    if (this.mode === 'tty' || this.mode === 'plain') this.#stderr.write(`${line}\n`);
  }

  /** result prints the command's result: JSON in json mode, `text` otherwise. */
  result(value: unknown, text: string): void {
    this.stop();
    if (this.mode === 'json') this.#stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    else if (text !== '') this.#stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** error prints one line (and an optional hint) on stderr. */
  error(message: string, hint?: string): void {
    this.stop();
    if (this.mode === 'json') {
      this.#stderr.write(`${JSON.stringify({ error: message, hint })}\n`);
      return;
    }
    this.#stderr.write(`lading: ${message}\n`);
    if (hint !== undefined) this.#stderr.write(`hint: ${hint}\n`);
  }
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
