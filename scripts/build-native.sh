#!/usr/bin/env bash
# Builds the project's native pieces into native/bin/ (ignored by git):
#   evfs — the sandbox file server (docs/sandboxes.md, "The file server"), over libfuse3.
# Needs build-essential, pkg-config and libfuse3-dev (scripts/install.sh installs them).
# Idempotent: rebuilds only when a source is newer than its binary.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p native/bin
out=native/bin/evfs
src=native/evfs/evfs.c
if [ ! -x "$out" ] || [ "$src" -nt "$out" ]; then
  # shellcheck disable=SC2046
  cc -O2 -Wall -Wextra -Werror -std=gnu11 -o "$out.tmp" "$src" $(pkg-config --cflags --libs fuse3)
  mv "$out.tmp" "$out"
fi
