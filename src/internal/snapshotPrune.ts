/**
 * Removing expired snapshots (SPEC §9: "expired snapshots are removed by `Volume.prune`"),
 * on every backend through its `VolumeSnapshotsService`. A snapshot whose `expiresAt` has
 * passed stays listed and usable until a prune removes it (like an expired volume); a
 * snapshot that cannot be removed now (a sandbox has it mounted) is skipped with the reason.
 */
import { DateTime, Effect, Option } from "effect"
import type { SnapshotInfo, VolumeBackendService } from "../VolumeBackend.js"

/** One snapshot, by volume and name. */
export interface SnapshotRef {
  readonly volume: string
  readonly snapshot: string
}

/** What a snapshot prune removed (or, in a dry run, would remove) and what it skipped and why. */
export interface SnapshotPruneResult {
  readonly removed: ReadonlyArray<SnapshotRef>
  readonly skipped: ReadonlyArray<SnapshotRef & { readonly reason: string }>
}

/** Whether `snapshot` expired at or before `now`. */
export const isExpired = (snapshot: SnapshotInfo, now: DateTime.Utc): boolean =>
  Option.exists(snapshot.expiresAt, (at) => DateTime.lessThanOrEqualTo(at, now))

/**
 * Removes the expired snapshots of `volumes` (all of them in a dry run are only reported).
 * A volume or snapshot removed by someone else meanwhile is simply not reported.
 */
export const pruneExpired = (
  backend: VolumeBackendService,
  volumes: ReadonlyArray<string>,
  options: { readonly now: DateTime.Utc; readonly dryRun: boolean }
) =>
  Effect.gen(function*() {
    const removed: Array<SnapshotRef> = []
    const skipped: Array<SnapshotRef & { readonly reason: string }> = []
    for (const volume of volumes) {
      const snapshots = yield* backend.snapshots.list(volume).pipe(
        Effect.catchTag("VolumeNotFound", () => Effect.succeed([]))
      )
      for (const snapshot of snapshots.filter((s) => isExpired(s, options.now))) {
        const ref = { volume: snapshot.volume, snapshot: snapshot.name }
        if (options.dryRun) {
          removed.push(ref)
          continue
        }
        yield* backend.snapshots.remove(snapshot.volume, snapshot.name).pipe(
          Effect.zipRight(Effect.sync(() => removed.push(ref))),
          Effect.catchTags({
            VolumeInUse: (error) => Effect.sync(() => skipped.push({ ...ref, reason: error.message })),
            SnapshotNotFound: () => Effect.void,
            VolumeNotFound: () => Effect.void
          })
        )
      }
    }
    return { removed, skipped } satisfies SnapshotPruneResult
  })
