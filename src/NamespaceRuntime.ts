/**
 * A sandbox runtime on Linux namespaces (bubblewrap), for Linux hosts where we are root.
 *
 * @since 0.1.0
 */
import { Layer } from "effect"
import * as internal from "./internal/namespace/runtime.js"
import { SandboxRuntime } from "./Sandbox.js"

/**
 * Runs each sandbox in its own mount, PID, IPC, UTS, cgroup and network namespaces
 * (network: loopback only), with bubblewrap; needs root, `bwrap`, util-linux
 * (`unshare`, `nsenter`, `setpriv`, `mount`) and, for qcow2/vmdk images,
 * `qemu-storage-daemon` with `/dev/fuse`.
 *
 * - Image `"host"`: the host's `/usr` and `/etc` (and the `/bin`, `/lib`... links) read-only
 *   on an otherwise empty root that is read-only too; `/tmp` is a private tmpfs. A root
 *   file-system directory is used through an overlay (it is never written) and must
 *   contain `/bin/sh` and `setpriv`.
 * - Mounts: bind and named directory volumes are bind mounts; named disk volumes and raw
 *   images are loop-mounted (ext4 or the given fstype); qcow2/vmdk images are exposed as
 *   raw through a `qemu-storage-daemon` FUSE export, then loop-mounted; tmpfs honours its
 *   size. `readonly` and `noexec` are real mount flags. Every mount is `nosuid,nodev`
 *   whether asked or not (bubblewrap always sets them).
 * - Commands run as uid 0 without any capability (bounding set empty, no-new-privs), so
 *   they cannot remount, unmount or mount anything.
 * - File-sharing policies: the native behaviour is literal host metadata
 *   (`statVirtualization("off")`) and a guest chmod changes the host inode
 *   (`hostPermissions("mirror")`); those two are accepted when set explicitly, and
 *   `"strict"`, `"relaxed"` and `"private"` fail with `Unsupported`.
 * - Quotas: this kernel has no usable quota support, so a sandbox can grow a directory
 *   volume past its quota while it runs; `Sandbox.stop()` measures every named volume and
 *   reports those over quota. Disk volumes are capped by their image size.
 * - Lifetime: closing the sandbox's scope, or this process dying in any way, ends the
 *   sandbox's processes and releases its mounts, loop devices and FUSE exports.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<SandboxRuntime> = Layer.succeed(SandboxRuntime, internal.make)
