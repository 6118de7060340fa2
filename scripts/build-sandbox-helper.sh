#!/usr/bin/env bash
# Builds the namespace runtime's native pieces into OUTDIR (default: the cache directory the
# runtime looks in, see src/internal/namespace/native.ts):
#   ev-sandbox-helper  (scripts/sandbox-helper.c: user namespace, idmapped mounts, exec)
#   seccomp.bpf        (scripts/seccomp-profile.py: the default seccomp profile, via libseccomp)
# Needs cc (build-essential) and python3-seccomp. Atomic: builds in a temporary directory
# and renames it into place, so concurrent builds and readers never see half a build.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ $# -ge 1 ]; then
  out="$1"
else
  version="$(cat "$here/sandbox-helper.c" "$here/seccomp-profile.py" | sha256sum | cut -c1-16)"
  out="${EFFECT_VOLUMES_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/effect-volumes}/sandbox-$version"
fi
[ -x "$out/ev-sandbox-helper" ] && [ -s "$out/seccomp.bpf" ] && exit 0
mkdir -p "$(dirname "$out")"
tmp="$(mktemp -d "$out.tmp-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
cc -O2 -Wall -Werror -o "$tmp/ev-sandbox-helper" "$here/sandbox-helper.c"
/usr/bin/python3 "$here/seccomp-profile.py" "$tmp/seccomp.bpf"
chmod 0755 "$tmp"
mv -T "$tmp" "$out" 2>/dev/null || true   # another build won the race: same content
