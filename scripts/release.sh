#!/usr/bin/env bash
# The release command. Packs or publishes every public package under
# packages/ (those without "private": true) with pnpm, which rewrites
# `workspace:` ranges to real versions; each package's `prepack` builds it.
# Private packages (testing, faults, bench, examples) are never included.
#
#   scripts/release.sh pack [DIR]        tarballs into DIR (default: dist-release)
#   scripts/release.sh publish [ARGS...] pnpm publish, e.g. --dry-run, --tag next
#   scripts/release.sh list              the public package names, one a line
set -euo pipefail
cd "$(dirname "$0")/.."
public_packages() {
  node -e '
    const fs = require("node:fs");
    for (const d of fs.readdirSync("packages").sort()) {
      const f = `packages/${d}/package.json`;
      if (!fs.existsSync(f)) continue;
      const j = JSON.parse(fs.readFileSync(f, "utf8"));
      if (j.private !== true) console.log(j.name);
    }'
}
filters=()
for name in $(public_packages); do filters+=(--filter "$name"); done
[ ${#filters[@]} -gt 0 ] || { echo "release: no public packages found" >&2; exit 1; }
cmd="${1:-}"
shift || true
case "$cmd" in
  list) public_packages ;;
  pack)
    dir="$(realpath -m "${1:-dist-release}")"
    rm -rf "$dir" && mkdir -p "$dir"
    npx -y pnpm@10 -r "${filters[@]}" pack --pack-destination "$dir" >/dev/null
    ls "$dir"/*.tgz
    ;;
  publish) npx -y pnpm@10 -r "${filters[@]}" publish --access public "$@" ;;
  *)
    echo "usage: scripts/release.sh pack [DIR] | publish [ARGS...] | list" >&2
    exit 2
    ;;
esac
