#!/usr/bin/env bash
# publint (strict: warnings fail) and @arethetypeswrong/cli (profile
# esm-only: we ship ESM only) on the tarball of every public package, as the
# release command packs it. Fails on any finding.
#
#   scripts/check-packages.sh [DIR]   DIR: tarballs from `scripts/release.sh pack`
#                                     (packed into a temporary dir when omitted)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-}"
if [ -z "$dir" ]; then
  dir="$(mktemp -d)"
  trap 'rm -rf "$dir"' EXIT
  bash scripts/release.sh pack "$dir" >/dev/null
fi
shopt -s nullglob
tarballs=("$dir"/*.tgz)
[ ${#tarballs[@]} -gt 0 ] || { echo "check-packages: no tarballs in $dir" >&2; exit 1; }
status=0
for t in "${tarballs[@]}"; do
  name="$(basename "$t")"
  bad=0
  # publint exits 0 on suggestions: anything but "All good!" is a finding.
  # Colours off (CI=true turns them on) so the line can be matched.
  if ! out="$(NO_COLOR=1 npx --no-install publint run "$t" --strict 2>&1)" ||
    ! sed 's/\x1b\[[0-9;]*m//g' <<<"$out" | grep -q '^All good!$'; then
    echo "publint: findings in $name" >&2
    echo "$out" >&2
    bad=1
  fi
  if ! out="$(npx --no-install attw "$t" --profile esm-only --format table-flipped 2>&1)"; then
    echo "attw: findings in $name" >&2
    echo "$out" >&2
    bad=1
  fi
  if [ $bad -eq 0 ]; then echo "publint + attw: $name clean"; else status=1; fi
done
exit $status
