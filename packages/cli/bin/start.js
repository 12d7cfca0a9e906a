// start prepares the process for one `lading` run and loads the CLI. It is
// plain JavaScript next to bin/lading.js because it runs before any of it.
import { existsSync, readFileSync, statSync } from 'node:fs';
import module from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';

const cliDir = fileURLToPath(new URL('..', import.meta.url));

/**
 * compileCache turns on V8's code cache for the modules loaded from here on
 * (Node ≥ 22.1; absent on 20, where this does nothing). The cache lives
 * per user, under $XDG_CACHE_HOME or ~/.cache; NODE_COMPILE_CACHE, which
 * Node reads itself, wins. A cache that cannot be written (a read-only
 * home) is skipped: Node reports it in the returned status, nothing throws.
 */
function compileCache() {
  if (typeof module.enableCompileCache !== 'function' || process.env.NODE_COMPILE_CACHE) return;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  try {
    module.enableCompileCache(join(base, 'lading', 'node-compile-cache'));
  } catch {
    // no cache this run
  }
}

/**
 * bundleIsCurrent says whether dist/bundle/ (scripts/bundle.mjs) is the
 * code to run. An installed package runs it whenever it is there; in a
 * checkout (tsconfig.json is not packed), only when no file it was built
 * from changed since, so that `tsc -b` alone never leaves a stale bundle
 * in charge.
 */
function bundleIsCurrent() {
  const stamp = join(cliDir, 'dist', 'bundle', 'inputs.json');
  if (!existsSync(stamp)) return false;
  if (!existsSync(join(cliDir, 'tsconfig.json'))) return true;
  try {
    const { builtAt, inputs } = JSON.parse(readFileSync(stamp, 'utf8'));
    return inputs.every(
      (p) => (statSync(join(cliDir, p), { throwIfNoEntry: false })?.mtimeMs ?? Infinity) < builtAt,
    );
  } catch {
    return false;
  }
}

/**
 * compiling lists the verbs whose work runs in WebAssembly: `build` and
 * `append` deflate layers with libdeflate (40 % slower on the baseline
 * tier), and `serve` runs until stopped.
 */
const compiling = new Set(['build', 'append', 'serve']);

/** baselineWasm says whether `verb` runs with V8's baseline wasm compiler only. */
export function baselineWasm(verb) {
  return !compiling.has(verb);
}

/**
 * start loads the CLI for `verb`. Every other verb is a short run: V8
 * compiles WebAssembly (undici's HTTP parser) with its baseline compiler
 * only, since the optimizing tier runs on a background thread that Node
 * waits for at exit (~0.08 s after the work is done, on a parser that only
 * reads headers and frames the body).
 */
export async function start(verb) {
  compileCache();
  if (baselineWasm(verb)) v8.setFlagsFromString('--liftoff-only');
  return bundleIsCurrent() ? import('../dist/bundle/main.js') : import('../dist/main.js');
}
