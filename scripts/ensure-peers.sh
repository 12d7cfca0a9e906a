#!/usr/bin/env bash
# Installs the system programs the integration tests talk to, from Debian:
# the CNCF distribution registry (docker-registry), and skopeo and umoci,
# which read, copy and unpack what lading writes. Idempotent; needs root (or
# sudo) and Debian's package archive only when something is missing.
# oci-image-tool validates the OCI layouts lading writes. With
# LADING_BENCH_PEERS=1 (the bench), buildah too: a peer the bench times.
set -euo pipefail
want=(docker-registry skopeo umoci oci-image-tool)
[ "${LADING_BENCH_PEERS:-}" = 1 ] && want+=(buildah)
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
