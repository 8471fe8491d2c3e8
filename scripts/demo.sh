#!/usr/bin/env bash
# The main job: installs what it needs, builds, then runs `meshwork demo`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "$(id -u)" != 0 ]; then
  echo "the meshwork demo builds network namespaces and needs root; run as root (sudo)." >&2
  exit 1
fi
MESHWORK_DEPS_PROFILE=demo bash scripts/deps.sh
exec node bin/meshwork demo "$@"
