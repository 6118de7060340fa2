/**
 * Host-side loop mounts of disk images that cannot leak.
 *
 * The image is mounted inside a private mount namespace held by a small helper
 * (`unshare ... sh`) whose stdin is a pipe from this process. The files are reachable from
 * the host through the helper's root, `/proc/<pid>/root/<mountpoint>`, and nowhere else.
 * When the scope closes we end stdin; when this process dies, even by SIGKILL, the kernel
 * closes the pipe for us. Either way the helper's `read` returns, the helper exits, its
 * namespace (the only one holding the mount) is torn down, and the loop device, set up
 * with autoclear by `mount -o loop`, is freed. Nothing is ever mounted in the host's own
 * namespace.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcessByStdio } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import type { Readable, Writable } from "node:stream"
import { StorageError, Unsupported } from "../../VolumeError.js"
import { toolEnv } from "./diskImage.js"

/**
 * Mounts `$1` on `$2` with the options `$3`, reports readiness, then holds the namespace
 * until stdin reaches end of file. `-t ext4` is explicit: the image may have been written
 * by a sandbox, and letting mount probe its type would hand it any file-system driver.
 */
const HOLDER_SCRIPT = "mount -t ext4 -o \"$3\" \"$1\" \"$2\" && echo ready && read _"

/** Longest wait for the mount helper to report readiness or to exit. */
const READY_TIMEOUT_MS = 60_000
const EXIT_TIMEOUT_MS = 30_000

const unsupported = new Unsupported({ operation: "fs() inside a disk volume (needs loop mounts)", backend: "local" })

/** What a refused mount says: we lack the privilege (not root, or no loop devices for us). */
const NOT_PERMITTED = /not permitted|permission denied|must be superuser|only root|are you root/i

type Holder = ChildProcessByStdio<Writable, Readable, Readable>

/** Waits until the helper prints `ready`; fails with what it printed if it exits first. */
const awaitReady = (holder: Holder, image: string): Effect.Effect<void, StorageError | Unsupported> =>
  Effect.async((resume) => {
    let stdout = ""
    let stderr = ""
    let settled = false
    const settle = (result: Effect.Effect<void, StorageError | Unsupported>) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resume(result)
    }
    const failed = (why: string) =>
      NOT_PERMITTED.test(stderr)
        ? unsupported
        : new StorageError({ message: `cannot mount the disk image ${image}: ${stderr.trim() || why}` })
    const timer = setTimeout(() => {
      holder.kill("SIGKILL")
      settle(Effect.fail(failed(`no answer from mount within ${READY_TIMEOUT_MS} ms`)))
    }, READY_TIMEOUT_MS)
    holder.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8")
      if (stdout.includes("ready\n")) settle(Effect.void)
    })
    holder.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8")
    })
    holder.once("error", (error) =>
      settle(Effect.fail(
        (error as NodeJS.ErrnoException).code === "ENOENT"
          ? unsupported
          : new StorageError({ message: `cannot start the mount helper for ${image}: ${error.message}`, cause: error })
      )))
    holder.once("exit", (code, signal) => settle(Effect.fail(failed(`mount helper exited with ${signal ?? code}`))))
  })

/** Ends the helper's stdin and waits for it to exit (killing it if it lingers). Never fails. */
const release = (holder: Holder): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const exited = holder.pid === undefined || holder.exitCode !== null || holder.signalCode !== null
    if (exited) return resume(Effect.void)
    const timer = setTimeout(() => holder.kill("SIGKILL"), EXIT_TIMEOUT_MS)
    holder.once("exit", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    holder.stdin.end()
  })

/**
 * Options of {@link mountImage}.
 */
export interface MountImageOptions {
  /** Absolute path of the raw ext4 image. */
  readonly image: string
  /** Directory for mount points (created if missing). */
  readonly runDir: string
  readonly readOnly?: boolean
}

/**
 * Loop-mounts an ext4 image for the current scope and returns the host path of its
 * root. `nosuid,nodev,noexec,noatime`: the host only reads and writes files there.
 * Without the privilege to mount, fails with `Unsupported`.
 */
export const mountImage = (options: MountImageOptions): Effect.Effect<string, StorageError | Unsupported, Scope.Scope> =>
  Effect.gen(function*() {
    const image = NodePath.resolve(options.image)
    // A fresh, empty directory; only the helper's private namespace mounts on it.
    const mountpoint = yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          NodeFs.mkdirSync(options.runDir, { recursive: true, mode: 0o700 })
          return NodeFs.mkdtempSync(NodePath.join(NodePath.resolve(options.runDir), "disk-"))
        },
        catch: (error) =>
          new StorageError({
            message: `cannot create a mount point under ${options.runDir}: ${error instanceof Error ? error.message : String(error)}`,
            cause: error
          })
      }),
      (dir) => Effect.ignore(Effect.try(() => NodeFs.rmdirSync(dir)))
    )
    const flags = ["loop", "nosuid", "nodev", "noexec", "noatime", ...(options.readOnly === true ? ["ro"] : [])].join(",")
    const holder = yield* Effect.acquireRelease(
      Effect.sync((): Holder => {
        const holder = spawn(
          "unshare",
          ["--mount", "--propagation", "private", "--", "sh", "-c", HOLDER_SCRIPT, "sh", image, mountpoint, flags],
          { stdio: ["pipe", "pipe", "pipe"], env: toolEnv() }
        )
        // EPIPE when the helper is already gone: nothing to do, and it must not crash us.
        holder.stdin.on("error", () => {})
        return holder
      }),
      release
    )
    yield* awaitReady(holder, image)
    return `/proc/${holder.pid}/root${mountpoint}`
  })
