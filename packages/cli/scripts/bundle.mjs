// @ts-check
// bundle.mjs turns the compiled CLI (dist/, from `tsc -b`) into a few ESM
// files under dist/bundle/, which bin/lading.js runs: one file per command
// group plus shared chunks, so `lading cp` reads and compiles ~10 files
// instead of ~130 and loads no module it does not call. Source maps chain
// through tsc's, so stack traces (--enable-source-maps) name src/*.ts.
//
// Two things are left out on purpose:
// - `serve` (and with it @lading/registry, bcryptjs, the AWS SDK) stays
//   unbundled: it is long-running, so start-up does not matter, and
//   registry resolves bcryptjs relative to its own files.
// - undici's index.js, which loads fetch, WebSocket, the cache stores, the
//   mock agent and HTTP/2 (~80 ms). remote imports `Agent` and `request`
//   from undici's own files (its transport/undici.ts), and HTTP/2 (only
//   used with allowH2, which lading never sets) loads on first use here.
//
// The files are written without comments or indentation (minifyWhitespace;
// names are kept) and the licence comments of bundled packages go to a
// .LEGAL.txt file beside the chunk that names it: every file is then plain
// ASCII, which Node reads as a one-byte string, and ~25 % smaller. A
// one-file `lading cp` → OCI layout took 310 instead of 330 ms (Node 20,
// medians of 15 interleaved runs).
//
// It also writes dist/bundle/inputs.json (what it was built from, and when), so
// that bin/start.js in a checkout can tell a bundle older than `tsc -b`'s
// output and fall back to dist/main.js.
import { build } from 'esbuild';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const cliDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// --outdir DIR writes the bundle elsewhere (the tests run it from a copy).
const at = process.argv.indexOf('--outdir');
const outdir = at > 0 ? resolve(process.argv[at + 1] ?? '') : join(cliDir, 'dist', 'bundle');
// undici is remote's dependency; resolve its files from there.
const remoteRequire = createRequire(
  createRequire(join(cliDir, 'package.json')).resolve('@lading/remote'),
);
const undiciDir = dirname(remoteRequire.resolve('undici/package.json'));

// esbuild runs a CommonJS module's body on its first require(), so this
// defers client-h2.js and node:http2 (and tls) until a connection is h2.
const lazyH2 = `'use strict';
module.exports = function connectH2(client, socket) {
  return require('./client-h2.js')(client, socket);
};
`;

/** @type {import('esbuild').Plugin} */
const plugin = {
  name: 'lading-cli',
  setup(b) {
    b.onResolve({ filter: /^\.\/client-h2\.js$/ }, (args) =>
      args.importer.endsWith(join('undici', 'lib', 'dispatcher', 'client.js'))
        ? { path: 'lazy-h2', namespace: 'lading' }
        : undefined,
    );
    b.onResolve({ filter: /^\.\/serve\.js$/ }, (args) =>
      args.importer.endsWith(join('dist', 'commands', 'index.js'))
        ? { path: '../commands/serve.js', external: true }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'lading' }, () => ({
      contents: lazyH2,
      loader: 'js',
      resolveDir: join(undiciDir, 'lib', 'dispatcher'),
    }));
  },
};

await rm(outdir, { recursive: true, force: true });
await mkdir(outdir, { recursive: true });
const started = Date.now();
const result = await build({
  absWorkingDir: cliDir,
  entryPoints: { main: 'dist/main.js' },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20.19',
  sourcemap: 'linked',
  sourcesContent: false,
  minifyWhitespace: true,
  legalComments: 'linked',
  charset: 'ascii',
  metafile: true,
  logLevel: 'warning',
  // Bundled CommonJS (undici, cli-progress) calls require() for node: modules.
  banner: {
    js: "import { createRequire as __ladingCreateRequire } from 'node:module'; const require = __ladingCreateRequire(import.meta.url);",
  },
  plugins: [plugin],
});
// remote imports undici's own files (transport/undici.ts), never its index.
const bundled = Object.keys(result.metafile.inputs);
if (bundled.some((f) => /[\\/]undici[\\/]index\.js$/.test(f))) {
  throw new Error("bundle.mjs: undici's index.js was bundled");
}
// What bin/start.js stats to tell a stale bundle: tsc -b rewrites a
// package's dist/.tsbuildinfo whenever it rebuilds it, and a dependency's
// directory is replaced (package.json included) when its version changes.
const stamps = new Set();
for (const input of bundled) {
  if (input.includes(':')) continue;
  const file = resolve(cliDir, input);
  const nm = file.lastIndexOf(`${sep}node_modules${sep}`);
  const dist = file.lastIndexOf(`${sep}dist${sep}`);
  if (nm >= 0) {
    const rest = file.slice(nm + 14).split(sep);
    const name = rest[0]?.startsWith('@') ? rest.slice(0, 2) : rest.slice(0, 1);
    stamps.add(join(file.slice(0, nm + 14), ...name, 'package.json'));
  } else if (dist >= 0) {
    stamps.add(join(file.slice(0, dist), 'dist', '.tsbuildinfo'));
  } else {
    stamps.add(file);
  }
}
const inputs = [...stamps].map((f) => relative(cliDir, f)).sort();
await writeFile(join(outdir, 'inputs.json'), JSON.stringify({ builtAt: started, inputs }) + '\n');
