/**
 * Live mounts of a running namespace sandbox (`sb.mount` / `sb.unmount`, SPEC §12).
 *
 * The mount is staged exactly as at start, but by a shell that joins the keeper's private
 * mount namespace (`nsenter --mount`); then `evfs --attach` clones the staged mount
 * (`open_tree`) and moves it into the sandbox's mount namespace at the guest path
 * (`move_mount`), where the sandbox's running processes see it. Releasing it detaches it
 * there and unmounts the stage. A file server started for a live mount is not the keeper's
 * child, so it watches the keeper instead (`--die-with`): nothing outlives the sandbox, also
 * when our process is killed.
 */
import { execFile } from "node:child_process"
import { readFileSync } from "node:fs"
import { rmdir, unlink } from "node:fs/promises"
import { Effect } from "effect"
import type { Scope } from "effect"
import type { ResolvedMount } from "../../../Sandbox.js"
import type { InvalidConfig } from "../../../VolumeError.js"
import { SandboxError, Unsupported } from "../../../VolumeError.js"
import * as Idmap from "../idmap.js"
import * as Plan from "../plan.js"
import * as FileServer from "./fileServer.js"

/** What the runtime knows about one running sandbox. */
export interface Target {
  readonly name: string
  /** The keeper shell (in the private mount namespace that holds the staged mounts). */
  readonly keeperPid: number
  /** The sandbox's init. */
  readonly sandboxPid: number
  /** ev-sandbox-helper, which makes the idmapped mounts (see ../idmap.ts). */
  readonly helper: string
  /** Records a mount whose file server died while the sandbox ran. */
  readonly failed: (failure: FileServer.FileServerFailure) => void
  /** Checks and prepares a mount exactly as at start (the runtime's own rules). */
  readonly prepare: (
    resolved: ResolvedMount
  ) => Effect.Effect<Plan.StagedMount, InvalidConfig | Unsupported | SandboxError, Scope.Scope>
}

const run = (sandbox: string, args: ReadonlyArray<string>) =>
  Effect.async<string, SandboxError>((resume) => {
    const child = execFile("nsenter", args, { encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) => {
      if (error === null) resume(Effect.succeed(stdout))
      else {
        resume(Effect.fail(
          new SandboxError({
            sandbox,
            reason: "Exec",
            message: `live mount: ${stderr.trim() || error.message}`
          })
        ))
      }
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** Shell lines that stage one live mount in the keeper's namespace. */
const stageLines = (staged: Plan.StagedMount, target: Target): ReadonlyArray<string> => {
  const keeperPid = target.keeperPid
  const { source } = staged.resolved
  if (source._tag === "Image" && source.format !== "raw") return []
  const staging = staged.fileServer
  if (source._tag !== "HostPath" || staging === undefined || !staging.serve) {
    // As at start: staged, then idmapped by the helper (a host path straight from its source).
    const idmap = Plan.idmapped(staged)
    return [
      ...Plan.stageCommands(staged, 0),
      ...(idmap.length === 0 ? [] : [Idmap.idmapCommand(target.helper, idmap).map(Plan.quote).join(" ")])
    ]
  }
  // A daemon of its own: detached from this shell's pipes, and gone with the keeper.
  const log = `${staged.stage}.log`
  const argv = [...staging.argv, `--die-with=${keeperPid}`, source.hostPath, staged.stage]
  return [
    `${argv.map(Plan.quote).join(" ")} </dev/null >/dev/null 2>${Plan.quote(log)} &`,
    `fs_pid=$!`,
    `if ! ${Plan.quote(FileServer.BINARY)} --await=${Plan.quote(staged.stage)} "$fs_pid"; then cat ${Plan.quote(log)} >&2; exit 1; fi`,
    // Our process checks at unmount whether the server still runs (else it died: reported).
    `echo "server $fs_pid"`
  ]
}

/** Whether the server whose pid the staging printed ("server PID") is gone. */
const serverGone = (stagingOutput: string): boolean => {
  const pid = /^server (\d+)$/m.exec(stagingOutput)?.[1]
  if (pid === undefined) return false
  try {
    return readFileSync(`/proc/${pid}/stat`, "latin1").split(") ")[1]?.startsWith("Z") ?? true
  } catch {
    return true
  }
}

/** Mounts `resolved` into the running sandbox for the lifetime of the scope. */
export const attach = (target: Target, resolved: ResolvedMount) =>
  Effect.gen(function*() {
    const { source } = resolved
    if (source._tag === "Image" && source.format !== "raw") {
      return yield* new Unsupported({
        operation: `a live ${source.format} mount at ${JSON.stringify(resolved.mount.guestPath)} ` +
          `(qemu-storage-daemon lives only as long as the keeper's start; mount it at start)`,
        backend: "namespace"
      })
    }
    const staged = yield* target.prepare(resolved)
    const inKeeper = [`--target=${target.keeperPid}`, "--mount", "--"]
    // Never recursive: an empty mount point (or file) once unmounted, nothing else.
    const removeStage = Effect.promise(() =>
      rmdir(staged.stage).catch(() => unlink(staged.stage)).catch(() => undefined).then(() =>
        unlink(`${staged.stage}.log`).catch(() => undefined)
      )
    )
    // Twice: an idmapped clone may be stacked on the staged mount.
    const umount = run(target.name, [...inKeeper, "umount", staged.stage]).pipe(Effect.ignore)
    const unstage = umount.pipe(Effect.zipRight(umount), Effect.zipRight(removeStage))
    yield* Effect.acquireRelease(
      run(target.name, [
        ...inKeeper,
        "/bin/sh",
        "-c",
        ["set -eu", `qsd_pids=""`, `fs_pids=""`, `loops=""`, ...stageLines(staged, target)].join("\n")
      ]).pipe(Effect.tapError(() => removeStage)),
      (output) =>
        Effect.zipRight(
          Effect.suspend(() => serverGone(output) ? Effect.sync(() => target.failed(FileServer.failureOf(resolved))) : Effect.void),
          unstage
        )
    )
    yield* Effect.acquireRelease(
      run(target.name, [
        ...inKeeper,
        FileServer.BINARY,
        `--attach=${target.sandboxPid}`,
        // The mount point is made as the sandbox's root (its root file system is idmapped).
        `--id-base=${Idmap.HOST_ID_BASE}`,
        staged.stage,
        resolved.mount.guestPath
      ]),
      // The sandbox may be gone already (stopped first): then so is its namespace.
      () =>
        run(target.name, [...inKeeper, FileServer.BINARY, `--detach=${target.sandboxPid}`, resolved.mount.guestPath])
          .pipe(Effect.ignore)
    )
  })
