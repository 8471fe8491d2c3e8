#!/usr/bin/env bash
# Installs what meshwork needs on a Debian 12 machine, idempotently: Debian
# packages (only the missing ones), npm packages, the native addon and the
# TypeScript build. Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Runtime needs: iproute2 (tests build namespaces with `ip netns`), nftables.
# Test/bench needs: dig, cnitool's sources and Go, the reference plugins,
# etcd, iperf3, wrk, haproxy, dnsmasq, dnsperf, promtool, chromium.
DEB_PACKAGES=(
  iproute2 nftables conntrack procps psmisc iputils-ping
  bind9-dnsutils libc-bin
  golang-go golang-github-appc-cni-dev dpkg-dev
  containernetworking-plugins
  etcd-server etcd-client
  iperf3 wrk haproxy dnsmasq-base dnsperf prometheus
  chromium
  python3 make g++
)
if [ "${MESHWORK_DEPS_PROFILE:-test}" = "demo" ]; then
  DEB_PACKAGES=(iproute2 nftables conntrack procps python3 make g++)
fi

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "meshwork: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages, only when package-lock changed since the last install.
stamp=node_modules/.meshwork-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "meshwork: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  cp package-lock.json "$stamp"
fi

# Native addon (setns, SO_ORIGINAL_DST) and TypeScript.
stale=0
for out in build/Release/meshwork_native.node build/Release/meshwork-cni-shim; do
  [ -f "$out" ] || stale=1
  for src in binding.gyp native/*; do [ "$src" -nt "$out" ] && stale=1; done
done
if [ "$stale" = 1 ]; then
  echo "meshwork: building the native addon" >&2
  npx node-gyp rebuild --silent >/dev/null
fi
echo "meshwork: compiling TypeScript" >&2
npx tsc -p tsconfig.json
