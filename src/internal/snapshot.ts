/**
 * Snapshot mounts of volumes without a host directory (cloud, memory; docs/sandboxes.md,
 * "Committing snapshot mounts"): the volume is materialised into a host cache directory when
 * a sandbox starts (`snapshot/materialize.ts`), and the sandbox's changes are committed back
 * path by path, three-way against the state materialised at start (`snapshot/commit.ts`).
 * Like Modal's volume `reload()` / `commit()`, but implicit at start and stop.
 *
 * Works over the public `VolumeFs`, so it holds for every backend; a manifest next to the
 * cache directory remembers what was synced (`snapshot/manifest.ts`).
 */
import { Effect, Option, Schema } from "effect"
import type { Scope } from "effect"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { CommitConflict, CommitFailed, CommitFailure, StorageError } from "../VolumeError.js"
import type { VolumeFs } from "../VolumeFs.js"
import type { Volume } from "../Volume.js"
import { commit } from "./snapshot/commit.js"
import type { CommitResult } from "./snapshot/commit.js"

import { claim } from "./snapshot/claim.js"
import { materialize } from "./snapshot/materialize.js"

export { materialize }

/**
 * The local cache directory of a volume's snapshot: under `$EFFECT_VOLUMES_CLOUD_CACHE`
 * (default `<tmpdir>/effect-volumes-cloud-cache`), keyed by bucket and the volume's data
 * prefix on the cloud backend (so a re-created volume never reuses an old cache).
 */
export const cacheDirectory = (volume: Volume): string => {
  const root = process.env["EFFECT_VOLUMES_CLOUD_CACHE"] ?? NodePath.join(NodeOs.tmpdir(), "effect-volumes-cloud-cache")
  return Option.match(volume.cloud, {
    onNone: () => NodePath.join(root, volume.backendKind, volume.name.toLowerCase()),
    onSome: (cloud) => NodePath.join(root, cloud.bucket, ...cloud.prefix.split("/").filter((s) => s !== ""))
  })
}

/**
 * The host directory a sandbox mounts for `volume`: its claimed cache, brought up to date
 * with the volume. The claim lasts for the scope, which must outlive the commit.
 */
export const prepare = (volume: Volume, sandbox: string): Effect.Effect<string, StorageError, Scope.Scope> =>
  Effect.gen(function*() {
    const directory = yield* claim(`${cacheDirectory(volume)}@${sandbox}`)
    yield* materialize(volume.fs(), directory)
    return directory
  }).pipe(
    Effect.mapError((cause) =>
      new StorageError({
        message: `materialising the snapshot of volume "${volume.name}" failed: ${cause.message}`,
        operation: "materialise",
        cause
      })
    )
  )

/**
 * What a commit did to one volume: files and links written, paths removed, entries the
 * volume cannot hold (left out), and the paths left to other writers.
 *
 * @since 0.2.0
 * @category models
 */
export class VolumeCommit extends Schema.Class<VolumeCommit>("VolumeCommit")({
  volume: Schema.String,
  uploaded: Schema.Array(Schema.String),
  deleted: Schema.Array(Schema.String),
  skipped: Schema.Array(Schema.String),
  conflicts: Schema.Array(CommitConflict)
}) {}

/** One snapshot mount to commit. */
export interface CommitTarget {
  readonly volume: string
  readonly fs: VolumeFs
  readonly directory: string
}

const failureOf = (volume: string, failure: CommitResult["failed"][number]) =>
  new CommitFailure({
    volume,
    path: failure.path,
    error: failure.error._tag,
    message: failure.error.message,
    keptAt: failure.keptAt
  })

/**
 * Commits every target (one after the other, each to the end even when another failed).
 * Succeeds with one {@link VolumeCommit} per target when every change was committed or left
 * as a conflict; fails with `CommitFailed` naming the volumes when some path was not.
 */
export const commitAll = (
  targets: ReadonlyArray<CommitTarget>,
  sandbox?: string
): Effect.Effect<ReadonlyArray<VolumeCommit>, CommitFailed> =>
  Effect.gen(function*() {
    const commits: Array<VolumeCommit> = []
    const failures: Array<CommitFailure> = []
    for (const { directory, fs, volume } of targets) {
      const outcome = yield* Effect.either(commit(fs, directory))
      if (outcome._tag === "Left") {
        // The cache itself could not be read: everything the sandbox wrote is still in it.
        failures.push(failureOf(volume, { path: "/", error: outcome.left, keptAt: Option.some(directory) }))
        continue
      }
      const result = outcome.right
      commits.push(
        new VolumeCommit({
          volume,
          uploaded: result.uploaded,
          deleted: result.deleted,
          skipped: result.skipped,
          conflicts: result.conflicts.map((c) => new CommitConflict({ volume, ...c }))
        })
      )
      failures.push(...result.failed.map((failure) => failureOf(volume, failure)))
    }
    if (failures.length === 0) return commits
    return yield* new CommitFailed({
      ...(sandbox === undefined ? {} : { sandbox }),
      volumes: [...new Set(failures.map((f) => f.volume))],
      failures,
      conflicts: commits.flatMap((c) => c.conflicts)
    })
  })
