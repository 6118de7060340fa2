/**
 * Snapshots of volumes (SPEC §9): read-only, point-in-time copies of one volume's
 * content, named with the volume-name rules. Take them with `Volume.snapshot`, list them
 * with `Volume.snapshots`, fork volumes from them with `Volume.fork` and roll a volume
 * back with `Volume.restore`.
 *
 * @since 0.2.0
 */
import { DateTime, Effect, Option } from "effect"
import type { Duration } from "effect"
import type { OnCopyProgress, SnapshotInfo, VolumeBackendService } from "./VolumeBackend.js"
import type { SnapshotNotFound, StorageError, VolumeInUse, VolumeNotFound } from "./VolumeError.js"
import { InvalidConfig } from "./VolumeError.js"
import type { VolumeFs } from "./VolumeFs.js"
import type { VolumeKind } from "./VolumeSpec.js"
import * as VolumeSpec from "./VolumeSpec.js"

/**
 * One snapshot of a volume.
 *
 * @since 0.2.0
 * @category models
 */
export interface VolumeSnapshot {
  /** The volume it was taken of. */
  readonly volume: string
  readonly name: string
  readonly kind: VolumeKind
  readonly createdAt: DateTime.Utc
  /** Usage of the snapshot's content, measured as for volumes. */
  readonly usedBytes: number
  readonly labels: ReadonlyArray<readonly [string, string]>
  /** When `Volume.prune` may remove it. */
  readonly expiresAt: Option.Option<DateTime.Utc>
  /** The backend's report this snapshot was made from. */
  readonly info: SnapshotInfo
  /** Read-only file access: every write fails with `VolumeFsError` reason `ReadOnly`. */
  readonly fs: () => VolumeFs
  readonly remove: () => Effect.Effect<void, VolumeNotFound | SnapshotNotFound | VolumeInUse | StorageError>
}

/**
 * Labels given as a record or as key/value pairs.
 *
 * @since 0.2.0
 * @category models
 */
export type Labels = Readonly<Record<string, string>> | ReadonlyArray<readonly [string, string]>

/**
 * Options of `Volume.snapshot`.
 *
 * @since 0.2.0
 * @category models
 */
export interface SnapshotOptions {
  /** Default: a sortable timestamp name such as `20261130T201530.123Z`. */
  readonly name?: string | undefined
  readonly labels?: Labels | undefined
  /** After this long `Volume.prune` removes the snapshot. */
  readonly expiresIn?: Duration.DurationInput | undefined
  /**
   * Copy a directory volume even while a sandbox holds it read-write: a crash-consistent
   * copy, files copied one by one.
   */
  readonly live?: boolean | undefined
  /**
   * Told how far the copy has got (bytes and files, copied and in all; never backwards, the
   * last report of a successful copy has everything copied). docs/snapshots.md says how
   * often each backend reports.
   */
  readonly onProgress?: OnCopyProgress | undefined
}

/**
 * Options of `Volume.fork`.
 *
 * @since 0.2.0
 * @category models
 */
export interface ForkOptions {
  /** Fork from this snapshot of the source instead of its current content. */
  readonly snapshot?: string | undefined
  /** Replaces the source's labels. */
  readonly labels?: Labels | undefined
  /** Replaces the source's quota (MiB; directory volumes). */
  readonly quota?: number | undefined
  /** As for `Volume.snapshot`: copy a source a sandbox holds read-write. */
  readonly live?: boolean | undefined
  /** As for `Volume.snapshot`: told how far the copy has got. */
  readonly onProgress?: OnCopyProgress | undefined
}

/**
 * Options of `Volume.restore`.
 *
 * @since 0.2.0
 * @category models
 */
export interface RestoreOptions {
  /** As for `Volume.snapshot`: told how far the copy of the snapshot's content has got. */
  readonly onProgress?: OnCopyProgress | undefined
}

/**
 * Options of `Volume.remove`.
 *
 * @since 0.2.0
 * @category models
 */
export interface RemoveOptions {
  /** Remove the volume's snapshots too (otherwise they make `remove` fail with `VolumeInUse`). */
  readonly withSnapshots?: boolean | undefined
}

/** @internal */
export const make = (backend: VolumeBackendService, info: SnapshotInfo): VolumeSnapshot => {
  let fs: VolumeFs | undefined
  return {
    volume: info.volume,
    name: info.name,
    kind: info.kind,
    createdAt: info.createdAt,
    usedBytes: info.usedBytes,
    labels: info.labels,
    expiresAt: info.expiresAt,
    info,
    fs: () => (fs ??= backend.snapshots.fs(info)),
    remove: () => backend.snapshots.remove(info.volume, info.name)
  }
}

const pad = (n: number, width = 2): string => String(n).padStart(width, "0")

/**
 * The default name of a snapshot taken at `at`: `YYYYMMDDTHHMMSS.mmmZ`, which sorts in
 * time order and follows the volume-name rules.
 *
 * @since 0.2.0
 * @category constructors
 */
export const defaultName = (at: DateTime.Utc): string => {
  const d = DateTime.toDateUtc(at)
  return `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}T${pad(d.getUTCHours())}${
    pad(d.getUTCMinutes())
  }${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}Z`
}

/**
 * Validates a snapshot name (the volume-name rules).
 *
 * @since 0.2.0
 * @category validation
 */
export const validateName = (name: string): Effect.Effect<string, InvalidConfig> =>
  Option.match(VolumeSpec.nameProblem(name), {
    onNone: () => Effect.succeed(name),
    onSome: (problem) => Effect.fail(new InvalidConfig({ message: `snapshot ${problem}` }))
  })

/**
 * Labels as de-duplicated pairs, checked against the label rules.
 *
 * @since 0.2.0
 * @category validation
 */
export const validateLabels = (
  labels: Labels | undefined
): Effect.Effect<ReadonlyArray<readonly [string, string]>, InvalidConfig> => {
  const pairs: ReadonlyArray<readonly [string, string]> = labels === undefined
    ? []
    : Array.isArray(labels)
    ? labels as ReadonlyArray<readonly [string, string]>
    : Object.entries(labels)
  return Option.match(VolumeSpec.labelsProblem(pairs), {
    onNone: () => Effect.succeed(VolumeSpec.dedupeLabels(pairs)),
    onSome: (message) => Effect.fail(new InvalidConfig({ message }))
  })
}
