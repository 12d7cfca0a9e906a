#!/usr/bin/env bash
# The consumer test: what a new user does with the published packages.
# Packs the public packages with the release command, then, for each Node
# binary given, in an empty project outside the repository:
#   1. `npm install` the tarballs (plain npm, no workspace; @types/node is
#      not installed by hand: it comes as our dependency);
#   2. type-checks a program that imports every public entry point, and the
#      README's Example verbatim, with `moduleResolution` nodenext and bundler;
#   3. loads every package with `require` from CommonJS;
#   4. starts `lading serve` from the installed CLI on 127.0.0.1 (random
#      port), runs the compiled README Example against it (only the registry
#      host rewritten) and checks the digest it prints with `lading digest`.
#
#   scripts/consumer-test.sh [--tarballs DIR] [NODE_BIN...]   (default: node on PATH)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tarballs=""
if [ "${1:-}" = --tarballs ]; then
  tarballs="$(realpath "${2:?--tarballs needs a directory}")"
  shift 2
fi
[ $# -gt 0 ] || set -- "$(command -v node)"

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [ -z "$tarballs" ]; then
  tarballs="$work/tarballs"
  bash "$repo/scripts/release.sh" pack "$tarballs" >/dev/null
fi
shopt -s nullglob
tgz=("$tarballs"/*.tgz)
[ ${#tgz[@]} -gt 0 ] || { echo "consumer-test: no tarballs in $tarballs" >&2; exit 1; }
# npm's own JavaScript, run by the Node under test.
npm_cli="$(dirname "$(readlink -f "$(command -v npm)")")/npm-cli.js"
[ -f "$npm_cli" ] || npm_cli="$(npm root -g)/npm/bin/npm-cli.js"

# The README's Example, verbatim: the first ts block under "## Example".
example="$(awk '/^## Example/{s=1;next} s&&/^```ts/{b=1;next} b&&/^```/{exit} b' "$repo/README.md")"
[ -n "$example" ] || { echo "consumer-test: no Example in README.md" >&2; exit 1; }

for node_bin in "$@"; do
  node_bin="$(realpath "$node_bin")"
  export PATH="$(dirname "$node_bin"):$PATH"
  version="$("$node_bin" --version)"
  project="$work/consumer-$version"
  mkdir -p "$project/app"
  cd "$project"
  echo "consumer test on Node $version in $project"
  printf '{ "name": "lading-consumer", "private": true, "type": "module" }\n' >package.json
  "$node_bin" "$npm_cli" install --no-audit --no-fund --loglevel=error "${tgz[@]}" typescript@~5.9.3 >/dev/null
  # Every @lading package comes from the tarballs, once (no registry copy).
  copies="$(find node_modules -path '*/@lading/core/package.json' | wc -l)"
  [ "$copies" = 1 ] || { echo "consumer-test: $copies copies of @lading/core" >&2; exit 1; }
  [ -d node_modules/@types/node ] || { echo "consumer-test: @types/node did not come with the packages" >&2; exit 1; }

  printf '%s\n' "$example" >example.ts
  cat >entry-points.ts <<'TS'
import { type Image, emptyImage, parseReference, isLadingError } from '@lading/core';
import { layerFromBytes } from '@lading/core';
import { streamLayer } from '@lading/layers';
import { RegistryClient, type WriteOptions } from '@lading/remote';
import { ociLayout, dockerArchive } from '@lading/layout';
import { createRegistry, memoryStorage } from '@lading/registry';
import { parseLocation, type Location } from '@lading/cli';
import { Readable } from 'node:stream';

const image: Image = emptyImage();
const layer = streamLayer(Readable.from([new Uint8Array(0)]));
const bytes = layerFromBytes(new Uint8Array(0));
const options: WriteOptions = {};
const where: Location = parseLocation('oci:./layout:1');
export const all = [
  image,
  layer,
  bytes,
  options,
  where,
  parseReference('127.0.0.1:5000/a:b').repository,
  isLadingError(new Error('x')),
  RegistryClient,
  ociLayout,
  dockerArchive,
  createRegistry({ storage: memoryStorage() }),
] as const;
TS
  cat >tsconfig.json <<'JSON'
{
  "compilerOptions": {
    "target": "ES2022",
    "lib": ["ES2023"],
    "module": "nodenext",
    "moduleResolution": "nodenext",
    "strict": true,
    "skipLibCheck": false,
    "outDir": "dist"
  },
  "files": ["example.ts", "entry-points.ts"]
}
JSON
  cat >tsconfig.bundler.json <<'JSON'
{
  "compilerOptions": {
    "target": "ES2022",
    "lib": ["ES2023"],
    "module": "preserve",
    "moduleResolution": "bundler",
    "strict": true,
    "skipLibCheck": false,
    "noEmit": true
  },
  "files": ["example.ts", "entry-points.ts"]
}
JSON
  "$node_bin" node_modules/typescript/bin/tsc -p tsconfig.json
  "$node_bin" node_modules/typescript/bin/tsc -p tsconfig.bundler.json
  echo "  type-check: nodenext and bundler clean (skipLibCheck off)"

  cat >require.cjs <<'JS'
const names = ['core', 'layers', 'remote', 'layout', 'registry', 'cli'];
for (const n of names) {
  const m = require(`@lading/${n}`);
  if (Object.keys(m).length === 0) throw new Error(`@lading/${n}: no exports`);
}
// Sibling plumbing is reachable only through the internal subpath.
if ('childrenToWrite' in require('@lading/core')) throw new Error('plumbing in @lading/core');
if (typeof require('@lading/core/internal').childrenToWrite !== 'function')
  throw new Error('@lading/core/internal lacks childrenToWrite');
console.log(`  require(): ${names.length} packages load from CommonJS`);
JS
  "$node_bin" --no-warnings require.cjs

  printf '#!/bin/sh\necho hello from lading\n' >app/run
  chmod +x app/run
  node_modules/.bin/lading serve --port 0 >serve.log 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    grep -q 'listening on' serve.log && break
    kill -0 "$server" 2>/dev/null || { cat serve.log >&2; exit 1; }
    sleep 0.1
  done
  host="$(sed -n 's#.*listening on http://\([^ /]*\).*#\1#p' serve.log)"
  [ -n "$host" ] || { echo "consumer-test: lading serve did not start" >&2; cat serve.log >&2; exit 1; }
  sed -i "s#registry\.example\.com#$host#g" dist/example.js
  pushed="$("$node_bin" dist/example.js)"
  checked="$(node_modules/.bin/lading digest "$host/team/app:1.2")"
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=""
  case "$pushed" in sha256:*) ;; *) echo "consumer-test: example printed '$pushed'" >&2; exit 1 ;; esac
  [ "$pushed" = "$checked" ] || {
    echo "consumer-test: example pushed $pushed, lading digest says $checked" >&2
    exit 1
  }
  echo "  README Example pushed $pushed to lading serve; lading digest agrees"
  echo "consumer test on Node $version: ok"
done
