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
 * runs ~30 % slower on the baseline wasm tier: it is compiled first, with
 * both tiers, and only what compiles after it is held to the baseline.
 */
const deflating = new Set(['build', 'append']);

/**
 * baselineWasm says whether `verb` runs with V8's baseline wasm compiler
 * only. V8 before 13 (Node 20 and 22) finishes a background tier-up compile
 * of undici's HTTP parser before the process exits, after the work is done
 * (`lading digest`: 0.37 s against 0.19 s with the baseline only on Node
 * 20, 0.28 against 0.18 s on Node 22). V8 13 and later (Node 24, 26) do not
 * wait, and there setting the flag costs ~20 ms itself (code compiled
 * under other flags is not reused): they keep the defaults. `serve` runs
 * until stopped, so it keeps both tiers everywhere.
 */
export function baselineWasm(verb, v8Version = process.versions.v8) {
  return verb !== 'serve' && Number(v8Version.split('.')[0]) < 13;
}

/**
 * start loads the CLI for `verb`, then holds WebAssembly to V8's baseline
 * compiler where {@link baselineWasm} says so. The flag is set after the
 * CLI's modules are loaded, before anything compiles WebAssembly (undici
 * compiles its parser on its first connection): Node's built-in modules
 * loaded before it use their code cache, which a change of V8 flags
 * invalidates (a one-file `lading cp` 262 → 251 ms on Node 20). A deflating
 * verb compiles libdeflate first, with both tiers.
 */
export async function start(verb) {
  compileCache();
  const cli = await (bundleIsCurrent()
    ? import('../dist/bundle/main.js')
    : import('../dist/main.js'));
  if (baselineWasm(verb)) {
    if (deflating.has(verb)) await cli.compileDeflate();
    v8.setFlagsFromString('--liftoff-only');
  }
  return cli;
}
