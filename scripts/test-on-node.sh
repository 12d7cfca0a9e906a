#!/usr/bin/env bash
# Runs the README's test command (`pnpm test`: build, then every test) with
# another Node first on PATH, so vitest and the processes the tests spawn run
# on it. The Node binary comes from scripts/node.sh (fetched once, cached).
#
#   scripts/test-on-node.sh 26.10.0
set -euo pipefail
cd "$(dirname "$0")/.."
node_bin="$(bash scripts/node.sh "${1:?usage: scripts/test-on-node.sh VERSION}")"
# pnpm itself: LADING_PNPM (.ci/run resolves it once), else npx's, resolved
# before the other Node goes first on PATH. Its bin is a `node` script, so it
# runs on that Node.
pnpm_bin="${LADING_PNPM:-$(npx -y -p pnpm@10 -- sh -c 'command -v pnpm')}"
export PATH="$(dirname "$node_bin"):$PATH"
echo "test suite on Node $(node --version)"
"$pnpm_bin" test
