/**
 * A sandbox runtime on Linux namespaces (bubblewrap), for Linux hosts where we are root.
 *
 * @since 0.1.0
 */
import { Layer } from "effect"
import * as internal from "./internal/namespace/runtime.js"
import { SandboxRuntime } from "./Sandbox.js"

/**
 * Runs each sandbox in its own user, mount, PID, IPC, UTS, cgroup and network namespaces
 * (network: loopback only), with bubblewrap, under a seccomp deny-list and in its own
 * cgroups; needs root, `bwrap`, util-linux (`unshare`, `mount`), the project's small helper
 * (built by `scripts/install.sh`, else on first use: `cc` and python3-seccomp) and, for
 * qcow2/vmdk images, `qemu-storage-daemon` with `/dev/fuse`. docs/sandboxes.md has the details.
 *
 * - Image `"host"`: the host's `/usr` (and the `/bin`, `/lib`... links) and a curated
 *   `/etc` (no secrets: an allowlist, owner-only files left out, generated passwd/group)
 *   read-only on an otherwise empty root that is read-only too; `/tmp` is a private tmpfs.
 *   A root file-system directory is used through an overlay (it is never written) and must
 *   contain `/bin/sh`.
 * - Identity: uid 0 inside a user namespace mapped to unprivileged host ids from
 *   `0x70000000`; every mount is idmapped, so ids in volumes mean the same inside and on
 *   the host (what the sandbox creates is root's on the host).
 * - Limits: `SandboxBuilder.memory/cpus/pids` (defaults: half the host's memory up to
 *   2 GiB, no CPU cap, 1024 processes) through cgroup v2 or v1 controllers; a command
 *   killed by the memory limit fails with `SandboxError` reason `OutOfMemory`.
 * - Mounts: bind and named directory volumes are bind mounts; named disk volumes and raw
 *   images are loop-mounted (ext4 or the given fstype); qcow2/vmdk images are exposed as
 *   raw through a `qemu-storage-daemon` FUSE export, then loop-mounted; tmpfs honours its
 *   size. `readonly` and `noexec` are real mount flags. Every mount is `nosuid,nodev`
 *   whether asked or not (bubblewrap always sets them).
 * - Commands run as uid 0 without any capability (bounding set empty, no-new-privs) under
 *   the seccomp filter, so they cannot remount, unmount or mount anything.
 * - File-sharing policies: the native behaviour is literal host metadata
 *   (`statVirtualization("off")`) and a guest chmod changes the host inode
 *   (`hostPermissions("mirror")`); those two are accepted when set explicitly, and
 *   `"strict"`, `"relaxed"` and `"private"` fail with `Unsupported`.
 * - Quotas: this kernel has no usable quota support, so a sandbox can grow a directory
 *   volume past its quota while it runs; `Sandbox.stop()` measures every named volume and
 *   reports those over quota. Disk volumes are capped by their image size.
 * - Lifetime: closing the sandbox's scope, or this process dying in any way, ends the
 *   sandbox's processes and releases its mounts, loop devices, FUSE exports and cgroups.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<SandboxRuntime> = Layer.succeed(SandboxRuntime, internal.make)
