#!/usr/bin/env bash
# Builds libcni's `cnitool` (golang-github-appc-cni 1.1.2) into .cache/cnitool.
# Debian ships libcni as a -dev package without cnitool, so we fetch the source
# package through a private apt state (our own sources list, lists and cache
# dirs: the machine's apt configuration is never touched) and build it offline
# in GOPATH mode against /usr/share/gocode. Idempotent: prints the binary path
# and exits at once when it is already built.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MESHWORK_CNITOOL_CACHE:-$root/.cache/cnitool}"
bin="$cache/bin/cnitool"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

for tool in go dpkg-source; do
  command -v "$tool" >/dev/null || { echo "build-cnitool: $tool missing (install golang-go dpkg-dev)" >&2; exit 1; }
done
[ -d /usr/share/gocode/src/github.com/containernetworking/cni ] ||
  { echo "build-cnitool: golang-github-appc-cni-dev missing" >&2; exit 1; }

apt_dir="$cache/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/src"

# deb-src lines derived from the machine's own Debian source (deb822 or one-line).
sources="$apt_dir/sources.list"
: >"$sources"
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  awk '
    /^URIs:/ { uri=$2 }
    /^Suites:/ { suites=""; for (i=2;i<=NF;i++) suites=suites" "$i }
    /^Components:/ { comps=""; for (i=2;i<=NF;i++) comps=comps" "$i }
    /^Signed-By:/ { key=$2 }
    /^$/ { if (uri!="") emit(); uri="" }
    END { if (uri!="") emit() }
    function emit(  n, s, i) { n=split(suites, s, " "); for (i=1;i<=n;i++) printf "deb-src [signed-by=%s] %s %s%s\n", key, uri, s[i], comps }
  ' /etc/apt/sources.list.d/debian.sources >>"$sources"
fi
if [ -f /etc/apt/sources.list ]; then
  sed -n 's/^deb \(.*\)$/deb-src \1/p' /etc/apt/sources.list >>"$sources"
fi
[ -s "$sources" ] || { echo "build-cnitool: no Debian source configured in /etc/apt" >&2; exit 1; }

apt_opts=(
  -o "Dir::Etc::SourceList=$sources" -o "Dir::Etc::SourceParts=$apt_dir/none"
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
  -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root" -qq
)
mkdir -p "$apt_dir/none"
if [ -z "$(ls "$apt_dir/src" | grep -E '^golang-github-appc-cni-[0-9]' || true)" ]; then
  apt-get "${apt_opts[@]}" update >&2
  (cd "$apt_dir/src" && apt-get "${apt_opts[@]}" source golang-github-appc-cni=1.1.2-1 >&2)
fi
srcdir="$(find "$apt_dir/src" -maxdepth 1 -type d -name 'golang-github-appc-cni-*' | head -1)"
[ -d "$srcdir/cnitool" ] || { echo "build-cnitool: no cnitool/ in $srcdir" >&2; exit 1; }

# GOPATH mode: cnitool imports github.com/containernetworking/cni/libcni, served
# by the -dev package; only the cnitool main package comes from the source tree.
gopath="$cache/gopath"
pkg="$gopath/src/github.com/containernetworking/cni/cnitool"
rm -rf "$gopath" && mkdir -p "$(dirname "$pkg")" "$cache/bin"
cp -r "$srcdir/cnitool" "$pkg"
(cd "$pkg" && GO111MODULE=off GOPROXY=off GOFLAGS= GOCACHE="$cache/gocache" \
  GOPATH="$gopath:/usr/share/gocode" go build -o "$bin.tmp" .)
mv "$bin.tmp" "$bin"
echo "$bin"
