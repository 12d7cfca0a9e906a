#!/usr/bin/env bash
# Installs the system programs the integration tests talk to: the CNCF
# distribution registry from Debian (docker-registry). Idempotent; needs root
# (or sudo) and Debian's package archive when something is missing.
set -euo pipefail
want=(docker-registry)
[ "${LADING_BENCH_PEERS:-0}" = 1 ] && want+=(skopeo umoci)
missing=()
for bin in "${want[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "installing ${missing[*]} from Debian for the integration tests" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
