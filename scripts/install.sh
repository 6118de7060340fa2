#!/usr/bin/env bash
# Installs everything effect-volumes and its tests need on a fresh Debian 12 machine:
# system packages (as root, through apt) and the npm dependencies (npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(
  e2fsprogs    # mkfs.ext4, debugfs, resize2fs, e2undo: disk volumes are ext4 images
  strace       # the disk-grow crash tests stop resize2fs at a chosen block write
  util-linux   # unshare, losetup, mount: loop-mounting disk images in a private namespace
  mount
  bubblewrap          # bwrap: the namespace sandbox runtime
  qemu-utils          # qemu-img: qcow2/vmdk test images
  qemu-system-common  # qemu-storage-daemon: qcow2/vmdk mounts through a FUSE export
  fuse3               # fusermount3: FUSE mounts (qemu exports, the sandbox file server)
  fuse-overlayfs      # the file server for stat virtualization / private host permissions
  libfuse3-dev        # headers for the project's own quota file server (built by scripts/)
  build-essential     # cc, make: native pieces built from source
  pkg-config
  libseccomp-dev      # the sandbox's seccomp filter
  python3             # the pty helper of `run -it`, renameat2 for restores, the seccomp compiler
  python3-seccomp     # compiles the seccomp profile to BPF (scripts/)
  attr                # getfattr/setfattr: tests inspect the xattr ownership overlay
  tmux                # a real pty for the CLI's terminal tests
  inotify-tools       # inotifywait: fs.watch on the local backend
)

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: need root to install ${missing[*]} (run it with sudo)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi

# The namespace runtime's helper and seccomp profile (otherwise built by the first sandbox).
scripts/build-sandbox-helper.sh

# The project's native pieces (the sandbox file server) — needs the packages above.
bash scripts/build-native.sh
