#!/usr/bin/env bash
# The official OCI distribution-spec conformance suite against @lading/registry
# (lading serve): memory, filesystem and S3 storage, anonymous and with token
# auth, and two S3-backed replicas behind a round-robin proxy. Fails naming
# each failed spec. Starts the S3 store (s3-up.sh installs what it needs) and
# stops it on exit.
#
#   bash scripts/conformance.sh [TARGET...]
#
# Tools are taken from beside the clone unless overridden:
#   LADING_CONFORMANCE_BIN  (default: $REPO/../shared/tools/oci-conformance/conformance.test)
#   LADING_S3_TOOLS         (default: $REPO/../shared/tools/s3)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
S3_TOOLS=${LADING_S3_TOOLS:-$REPO/../shared/tools/s3}
export LADING_CONFORMANCE_BIN=${LADING_CONFORMANCE_BIN:-$REPO/../shared/tools/oci-conformance/conformance.test}
[ -x "$LADING_CONFORMANCE_BIN" ] || { echo "conformance: no suite at $LADING_CONFORMANCE_BIN" >&2; exit 1; }
[ -f "$REPO/packages/cli/dist/main.js" ] || (cd "$REPO" && npx -y pnpm@10 exec tsc -b)

eval "$(bash "$S3_TOOLS/s3-up.sh")"
trap 'bash "$S3_TOOLS/s3-down.sh" $S3_PIDS >/dev/null 2>&1 || true' EXIT
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=${AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED:-true}
node "$REPO/scripts/conformance.mjs" "$@"
