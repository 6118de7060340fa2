#!/usr/bin/env bash
# Builds the project's native pieces into native/bin/ (ignored by git):
#   evfs — the sandbox file server (docs/sandboxes.md, "The file server"), over libfuse3.
# Needs build-essential, pkg-config and libfuse3-dev (scripts/install.sh installs them).
# Idempotent: rebuilds only when a source is newer than its binary.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p native/bin
out=native/bin/evfs
sources=(native/evfs/*.c)
stale=0
[ -x "$out" ] || stale=1
for f in "${sources[@]}" native/evfs/*.h; do [ "$f" -nt "$out" ] && stale=1; done
if [ "$stale" = 1 ]; then
  # shellcheck disable=SC2046
  cc -O2 -Wall -Wextra -Werror -std=gnu11 -o "$out.tmp" "${sources[@]}" $(pkg-config --cflags --libs fuse3)
  mv "$out.tmp" "$out"
fi
