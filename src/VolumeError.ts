/**
 * The typed errors of effect-volumes. Every expected failure is one of these
 * `Schema.TaggedError` classes, so it prints, compares and serialises.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * A volume with this name does not exist.
 *
 * @since 0.1.0
 * @category errors
 */
export class VolumeNotFound extends Schema.TaggedError<VolumeNotFound>()("VolumeNotFound", {
  volume: Schema.String
}) {
  override get message(): string {
    return `volume "${this.volume}" does not exist; create it first or check the name with "volumes ls"`
  }
}

/**
 * A volume with this name (compared case-insensitively) already exists.
 *
 * @since 0.1.0
 * @category errors
 */
export class VolumeAlreadyExists extends Schema.TaggedError<VolumeAlreadyExists>()("VolumeAlreadyExists", {
  volume: Schema.String
}) {
  override get message(): string {
    return `volume "${this.volume}" already exists; pick another name or remove the existing volume first`
  }
}

/**
 * The volume is mounted by a running sandbox (or held by another host-side operation).
 *
 * @since 0.1.0
 * @category errors
 */
export class VolumeInUse extends Schema.TaggedError<VolumeInUse>()("VolumeInUse", {
  volume: Schema.String,
  holders: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return `volume "${this.volume}" is in use by ${this.holders.length > 0 ? this.holders.join(", ") : "a sandbox"}; stop the holder and try again`
  }
}

/**
 * A builder, spec or mount failed validation.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>()("InvalidConfig", {
  message: Schema.String
}) {}

/**
 * The backend or runtime cannot do this operation.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unsupported extends Schema.TaggedError<Unsupported>()("Unsupported", {
  operation: Schema.String,
  backend: Schema.String
}) {
  override get message(): string {
    return `${this.operation} is not supported by the ${this.backend} backend`
  }
}

/**
 * A volume path is malformed, escapes the volume, names the root where a file is
 * required, or goes through a symlink.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidPath extends Schema.TaggedError<InvalidPath>()("InvalidPath", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `invalid volume path ${JSON.stringify(this.path)}: ${this.reason}`
  }
}

/**
 * The path does not exist inside the volume.
 *
 * @since 0.1.0
 * @category errors
 */
export class PathNotFound extends Schema.TaggedError<PathNotFound>()("PathNotFound", {
  path: Schema.String
}) {
  override get message(): string {
    return `${this.path} does not exist in the volume`
  }
}

/**
 * A write would take the volume's usage above its quota; nothing was changed.
 *
 * @since 0.1.0
 * @category errors
 */
export class QuotaExceeded extends Schema.TaggedError<QuotaExceeded>()("QuotaExceeded", {
  volume: Schema.String,
  quotaBytes: Schema.Number,
  usedBytes: Schema.Number,
  requestedBytes: Schema.Number
}) {
  override get message(): string {
    return `volume "${this.volume}" quota exceeded: ${this.usedBytes} bytes used + ${this.requestedBytes} requested > ${this.quotaBytes} allowed; free space or raise the quota`
  }
}

/**
 * The reasons a file-system operation can fail with {@link VolumeFsError}.
 *
 * @since 0.1.0
 * @category models
 */
export const VolumeFsErrorReason = Schema.Literal(
  "NotADirectory",
  "IsADirectory",
  "AlreadyExists",
  "DirectoryNotEmpty",
  "NoSpace",
  "ReadOnly",
  "PermissionDenied",
  "InvalidData",
  "Io"
)

/**
 * @since 0.1.0
 * @category models
 */
export type VolumeFsErrorReason = typeof VolumeFsErrorReason.Type

/**
 * Any other file-system outcome inside a volume.
 *
 * @since 0.1.0
 * @category errors
 */
export class VolumeFsError extends Schema.TaggedError<VolumeFsError>()("VolumeFsError", {
  path: Schema.String,
  reason: VolumeFsErrorReason,
  detail: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return `${this.path}: ${describeFsReason[this.reason]}${this.detail ? ` (${this.detail})` : ""}`
  }
}

const describeFsReason: Record<VolumeFsErrorReason, string> = {
  NotADirectory: "a path component is not a directory",
  IsADirectory: "is a directory",
  AlreadyExists: "already exists",
  DirectoryNotEmpty: "directory is not empty",
  NoSpace: "no space left in the volume",
  ReadOnly: "the volume is read-only",
  PermissionDenied: "permission denied",
  InvalidData: "the data is invalid",
  Io: "input/output error"
}

/**
 * Why a {@link StorageError} happened.
 *
 * @since 0.2.0
 * @category models
 */
export const StorageErrorReason = Schema.Literal("Busy", "Conflict", "Unavailable", "Corrupt", "Unknown")

/**
 * @since 0.2.0
 * @category models
 */
export type StorageErrorReason = typeof StorageErrorReason.Type

/**
 * The database, the disk or the object store failed.
 *
 * @since 0.1.0
 * @category errors
 */
export class StorageError extends Schema.TaggedError<StorageError>()("StorageError", {
  message: Schema.String,
  /**
   * What kind of failure this is, so callers (and the CLI's exit codes) can tell "try again"
   * from "broken": `Busy` (a lock or rate limit; retrying later helps), `Conflict` (a concurrent
   * change won a compare-and-swap), `Unavailable` (the store cannot be reached or timed out),
   * `Corrupt` (stored state is unreadable), `Unknown` (anything else). Defaults to `Unknown`.
   */
  reason: Schema.optionalWith(StorageErrorReason, { default: () => "Unknown" as const }),
  /** The operation that failed, e.g. `"PutObject"`, `"create"`, `"sqlite"`. */
  operation: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect)
}) {}

/**
 * A snapshot with this name does not exist for the volume.
 *
 * @since 0.2.0
 * @category errors
 */
export class SnapshotNotFound extends Schema.TaggedError<SnapshotNotFound>()("SnapshotNotFound", {
  volume: Schema.String,
  snapshot: Schema.String
}) {
  override get message(): string {
    return `volume "${this.volume}" has no snapshot "${this.snapshot}"; list them with "volumes snapshot ls ${this.volume}"`
  }
}

/**
 * The volume already has a snapshot with this name (compared case-insensitively).
 *
 * @since 0.2.0
 * @category errors
 */
export class SnapshotAlreadyExists extends Schema.TaggedError<SnapshotAlreadyExists>()("SnapshotAlreadyExists", {
  volume: Schema.String,
  snapshot: Schema.String
}) {
  override get message(): string {
    return `volume "${this.volume}" already has a snapshot "${this.snapshot}"; pick another name or remove it first`
  }
}

/**
 * A sandbox runtime failed to start, exec or stop.
 *
 * @since 0.1.0
 * @category errors
 */
export class SandboxError extends Schema.TaggedError<SandboxError>()("SandboxError", {
  sandbox: Schema.String,
  reason: Schema.Literal("Start", "Exec", "Stop", "Timeout", "OutOfMemory"),
  message: Schema.String
}) {}

/**
 * Every error a volume file-system operation can raise.
 *
 * @since 0.1.0
 * @category errors
 */
export type VolumeFsFailure =
  | VolumeNotFound
  | VolumeInUse
  | Unsupported
  | InvalidPath
  | PathNotFound
  | QuotaExceeded
  | VolumeFsError
  | StorageError

/**
 * Why one path of a sandbox's changes to a volume without a host directory was left as the
 * store has it (docs/sandboxes.md, "Committing snapshot mounts"):
 * - `ChangedInBoth`: the sandbox and another writer both changed it;
 * - `CreatedInBoth`: both created it;
 * - `ChangedHereRemovedThere`: the sandbox changed it, another writer removed it;
 * - `RemovedHereChangedThere`: the sandbox removed it, another writer changed it (for a
 *   directory: added or changed something below it, which is kept);
 * - `PathBlocked`: the store has something else in the way (a file where the sandbox needs a
 *   directory, or the reverse).
 *
 * @since 0.2.0
 * @category models
 */
export const CommitConflictReason = Schema.Literal(
  "ChangedInBoth",
  "CreatedInBoth",
  "ChangedHereRemovedThere",
  "RemovedHereChangedThere",
  "PathBlocked"
)

/**
 * @since 0.2.0
 * @category models
 */
export type CommitConflictReason = typeof CommitConflictReason.Type

/**
 * A path the commit left as the store has it because another writer changed it too. The
 * sandbox's version (a file or link) is moved to `keptAt` on the host, so nothing is lost.
 *
 * @since 0.2.0
 * @category models
 */
export class CommitConflict extends Schema.Class<CommitConflict>("CommitConflict")({
  volume: Schema.String,
  path: Schema.String,
  reason: CommitConflictReason,
  /** Host path of the sandbox's version; `None` when it had none (it removed the path). */
  keptAt: Schema.OptionFromNullOr(Schema.String)
}) {}

/**
 * A path the commit could not apply: the store refused it (e.g. `QuotaExceeded`), or it was
 * not attempted after the store failed. The sandbox's version is kept at `keptAt`.
 *
 * @since 0.2.0
 * @category models
 */
export class CommitFailure extends Schema.Class<CommitFailure>("CommitFailure")({
  volume: Schema.String,
  path: Schema.String,
  /** The tag of the error, e.g. `"QuotaExceeded"` or `"StorageError"`. */
  error: Schema.String,
  message: Schema.String,
  keptAt: Schema.OptionFromNullOr(Schema.String)
}) {}

/**
 * A sandbox's changes to volumes without a host directory (cloud, memory) were not all
 * committed. Every other change was; `failures` lists the paths that were not, with where
 * the sandbox's versions are kept, and `conflicts` the paths left to other writers.
 *
 * @since 0.2.0
 * @category errors
 */
export class CommitFailed extends Schema.TaggedError<CommitFailed>()("CommitFailed", {
  /** The sandbox whose changes these are, when a sandbox committed them. */
  sandbox: Schema.optional(Schema.String),
  volumes: Schema.Array(Schema.String),
  failures: Schema.Array(CommitFailure),
  conflicts: Schema.Array(CommitConflict)
}) {
  override get message(): string {
    const who = this.sandbox === undefined ? "the changes" : `the changes of sandbox "${this.sandbox}"`
    const first = this.failures[0]
    const example = first === undefined ? "" : ` (first: ${first.path}: ${first.error}: ${first.message})`
    const kept = this.failures.flatMap((f) => f.keptAt._tag === "Some" ? [f.keptAt.value] : [])
    return `${who} to volume ${this.volumes.map((v) => `"${v}"`).join(", ")} could not all be committed: ${this.failures.length} path(s) failed${example}` +
      (kept.length > 0 ? `; the sandbox's versions are kept on this host, e.g. at ${kept[0]}` : "")
  }
}

/**
 * Every error a volume file-system operation that adds no bytes can raise (reads,
 * listings, metadata, removals, renames): {@link VolumeFsFailure} without `QuotaExceeded`.
 * `VolumeInUse` stays: a disk volume's files are unreachable while a sandbox has it.
 *
 * @since 0.2.0
 * @category errors
 */
export type VolumeFsReadFailure = Exclude<VolumeFsFailure, QuotaExceeded>
