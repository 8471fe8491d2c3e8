#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds, then runs every
# *.test.js under dist/test with Node's own runner.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "$(id -u)" != 0 ]; then
  echo "meshwork tests build real network namespaces and need root; run as root (sudo)." >&2
  exit 1
fi
bash scripts/deps.sh
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
if [ "$#" -gt 0 ]; then
  mapfile -t files < <(printf '%s\n' "${files[@]}" | grep -E "$1")
fi
exec node --test --test-concurrency="${MESHWORK_TEST_CONCURRENCY:-2}" --test-timeout=600000 "${files[@]}"
