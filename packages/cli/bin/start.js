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
 * deflating lists the verbs that deflate layers with libdeflate, which
 * runs ~30 % slower on the baseline wasm tier: it is compiled first, so
 * that it keeps V8's tiering.
 */
const deflating = new Set(['build', 'append']);

/**
 * tieringBudget is the V8 wasm tiering budget a short run compiles with:
 * the largest there is, so that undici's HTTP parser, which only reads
 * headers and frames bodies, stays on the baseline tier. Tiering it up
 * runs on a background thread that Node waits for when the process ends,
 * after the work is done: `lading digest` took 0.30 s against 0.20 s on
 * Node 24, 0.26 against 0.22 s on Node 26, 0.37 against 0.19 s on Node 20.
 * (`--liftoff-only` set at run time does the same on Node 20 and 22 only.)
 */
const tieringBudget = '--wasm-tiering-budget=2147483647';

/**
 * baselineWasm says whether `verb` holds the WebAssembly it compiles from
 * now on to the baseline tier; `serve` runs until stopped.
 */
export function baselineWasm(verb) {
  return verb !== 'serve';
}

/**
 * start loads the CLI for `verb`, then sets {@link tieringBudget} where
 * {@link baselineWasm} says so. A module keeps the budget it was compiled
 * with, so the flag is set before anything compiles WebAssembly (undici
 * compiles its parser on its first connection), and after a deflating verb
 * has compiled libdeflate. It is set after the CLI's modules are loaded:
 * Node's built-in modules loaded before it keep their code cache, which a
 * change of V8 flags invalidates (a one-file `lading cp` 262 → 251 ms on
 * Node 20).
 */
export async function start(verb) {
  compileCache();
  const cli = await (bundleIsCurrent()
    ? import('../dist/bundle/main.js')
    : import('../dist/main.js'));
  if (baselineWasm(verb)) {
    if (deflating.has(verb)) await cli.compileDeflate();
    v8.setFlagsFromString(tieringBudget);
  }
  return cli;
}
