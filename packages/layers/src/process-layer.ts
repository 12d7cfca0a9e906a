import type { ChildProcess } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ErrorCode, LadingError } from '@lading/core';
import { StreamLayer, type StreamLayerOptions } from './stream-layer.js';

// Enough of stderr to name the cause ("tar: app: Cannot stat: …").
const stderrHead = 2048;
const heldBytes = 1024 * 1024;

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

function exitOf(child: ChildProcess): Promise<Exit> {
  return new Promise<Exit>((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
    });
    child.once('error', reject);
  });
}

function firstLine(chunks: readonly Buffer[]): string {
  const line = Buffer.concat(chunks)
    .toString('utf8')
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l !== '');
  return (line ?? '').slice(0, 300);
}

/**
 * layerFromProcess makes a single-pass layer of what a child process writes
 * to its stdout (an uncompressed tar, or gzip with `{ compressed: true }`),
 * spawned with stdout as a pipe (`spawn('tar', ['-cf', '-', '-C', dir,
 * '.'])`). The layer fails — its digest, diffId and size reject, and
 * `write()` stores no manifest and no tag — when the process exits with a
 * non-zero code or is killed by a signal, even when what it wrote is a
 * complete tar (GNU tar exits 2 after skipping a missing file). The message
 * ends with the first line of the process's stderr when that is a pipe. A
 * consumer that stops reading early kills the process (SIGTERM).
 * @throws INVALID_ARGUMENT when the child has no stdout pipe; the layer
 *   fails with INVALID_LAYER (producer failed, or an incomplete tar).
 */
export function layerFromProcess(
  child: ChildProcess,
  options: StreamLayerOptions = {},
): StreamLayer {
  const stdout = child.stdout;
  if (stdout === null) {
    throw new LadingError(
      ErrorCode.InvalidArgument,
      "layerFromProcess needs the child's stdout as a pipe (stdio: ['ignore', 'pipe', …])",
    );
  }
  const name = child.spawnfile;
  const exited = exitOf(child);
  exited.catch(() => undefined);
  const errText: Buffer[] = [];
  let errBytes = 0;
  // stderr is read to its end (a full pipe would stall the producer); its
  // start is kept: the first error line usually names the cause.
  child.stderr?.on('data', (chunk: Buffer) => {
    if (errBytes >= stderrHead) return;
    errText.push(chunk);
    errBytes += chunk.length;
  });
  // Node resumes (and so discards) a child's unread stdout when the child
  // exits; a pipe attached now keeps what a fast producer wrote (at most a
  // pipe buffer once it has exited) until the layer is read.
  const held = new PassThrough({ highWaterMark: heldBytes });
  const piping = pipeline(stdout, held);
  piping.catch(() => undefined);
  async function* output(): AsyncGenerator<Buffer> {
    let finished = false;
    try {
      for await (const chunk of held as AsyncIterable<Buffer>) yield chunk;
      await piping;
      finished = true;
    } finally {
      if (!finished) {
        held.destroy();
        if (child.exitCode === null && child.signalCode === null) child.kill();
      }
    }
    let exit: Exit;
    try {
      exit = await exited;
    } catch (err) {
      throw new LadingError(ErrorCode.InvalidLayer, `the layer's producer ${name} failed`, {
        cause: err,
      });
    }
    if (exit.code === 0) return;
    const how =
      exit.signal === null
        ? `exited with code ${String(exit.code)}`
        : `was killed (${exit.signal})`;
    const said = firstLine(errText);
    throw new LadingError(
      ErrorCode.InvalidLayer,
      `the layer's producer ${name} ${how}${said === '' ? '' : `: ${said}`}`,
    );
  }
  return new StreamLayer(output(), options);
}
