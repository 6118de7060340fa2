/**
 * Where a sandbox's snapshot mount (`m.snapshot(volume, snapshot)`) comes from. On the
 * local backend it is the snapshot's own directory or image, mounted read-only; for a
 * directory snapshot the sandbox holds the volume read-only (through the backend's holders,
 * like any named mount) under a label that names the snapshot, so neither is removed under
 * it. Backends without host files (memory, cloud) materialise the snapshot into a private
 * cache directory instead; it is never committed back, the mount being read-only.
 */
import { Effect, Option } from "effect"
import type { Scope } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import type { MountSource } from "../Sandbox.js"
import type { VolumeHandle } from "../Volume.js"
import * as Volume from "../Volume.js"
import { StorageError } from "../VolumeError.js"
import type { VolumeInUse, VolumeNotFound } from "../VolumeError.js"
import type { VolumeHolders } from "../VolumeBackend.js"
import { snapshotHolder } from "./snapshotRules.js"
import * as Snapshot from "./snapshot.js"

/** The mount source of snapshot `snapshot` of `handle`'s volume, held until the scope closes. */
export const resolve = (
  handle: VolumeHandle,
  snapshot: string,
  holder: string,
  holders: VolumeHolders
) =>
  Effect.gen(function*() {
    const found = yield* Volume.getSnapshot(handle.name, snapshot)
    const scoped: Effect.Effect<MountSource, VolumeInUse | VolumeNotFound | StorageError, Scope.Scope> = Effect.gen(
      function*() {
        // Directory holders never conflict; a disk snapshot's image is its own file (the loop
        // device keeps it open), so a disk volume's writer is not refused for it.
        if (found.kind === "directory") {
          yield* holders.acquire(handle.name, snapshotHolder(holder, found.name), "ro")
        }
        if (Option.isSome(found.info.hostPath)) {
          const hostPath = found.info.hostPath.value
          return found.kind === "directory"
            ? { _tag: "HostPath", hostPath } satisfies MountSource
            : { _tag: "Image", hostPath, format: "raw", fstype: "ext4" } satisfies MountSource
        }
        const directory = yield* Effect.acquireRelease(
          Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "effect-volumes-snapshot-"))),
          (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
        )
        yield* Snapshot.materialize(found.fs(), directory).pipe(
          Effect.mapError((cause) =>
            new StorageError({ message: `materialising snapshot "${found.name}" of volume "${handle.name}" failed: ${cause.message}`, cause })
          )
        )
        return { _tag: "HostPath", hostPath: directory } satisfies MountSource
      }
    )
    return scoped
  })
