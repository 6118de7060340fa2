/**
 * The service every backend implements: where volumes live, their lifecycle and their
 * files. Swap backends by providing a different layer (`LocalBackend.layer()`,
 * `MemoryBackend.layer`, `S3Backend.layer(...)`); programs written against `Volume` do
 * not change.
 *
 * @since 0.1.0
 */
import type { DateTime, Effect, Either, Scope } from "effect"
import { Context, Option, Schema } from "effect"
import { Mebibytes } from "./Size.js"
import type {
  InvalidConfig,
  QuotaExceeded,
  SnapshotAlreadyExists,
  SnapshotNotFound,
  StorageError,
  Unsupported,
  VolumeAlreadyExists,
  VolumeInUse,
  VolumeNotFound
} from "./VolumeError.js"
import type { VolumeFs } from "./VolumeFs.js"
import { Label, VolumeKind } from "./VolumeSpec.js"
import type { ValidSpec } from "./VolumeSpec.js"

/**
 * Which kind of backend holds a volume. `"memory"` is the in-memory test backend.
 *
 * @since 0.1.0
 * @category models
 */
export const BackendKind = Schema.Literal("local", "cloud", "memory")

/**
 * @since 0.1.0
 * @category models
 */
export type BackendKind = typeof BackendKind.Type

/**
 * Where a local volume lives on the host.
 *
 * @since 0.1.0
 * @category models
 */
export class LocalState extends Schema.Class<LocalState>("LocalState")({
  /** The backend's home directory. */
  home: Schema.String,
  /** `<home>/volumes/<name>`: bookkeeping root of the volume. */
  directory: Schema.String,
  /** `<home>/volumes/<name>/data` for directory volumes. */
  dataPath: Schema.OptionFromNullOr(Schema.String)
}) {}

/**
 * Where a cloud volume lives in the object store.
 *
 * @since 0.1.0
 * @category models
 */
export class CloudState extends Schema.Class<CloudState>("CloudState")({
  endpoint: Schema.String,
  bucket: Schema.String,
  /** Key prefix of this volume's objects. */
  prefix: Schema.String
}) {}

/**
 * A volume's usage as the backend keeps it (see `docs/volumes.md`).
 *
 * @since 0.2.0
 * @category models
 */
export class VolumeUsage extends Schema.Class<VolumeUsage>("VolumeUsage")({
  /** Apparent size of regular files and symlinks (`st_size`). */
  logicalBytes: Schema.Number,
  /** Bytes the storage allocated for them (`st_blocks * 512` on the host; the image's blocks for a disk volume). */
  allocatedBytes: Schema.Number,
  /** Number of regular files and symlinks. */
  files: Schema.Number
}) {}

/**
 * What a backend reports about one volume.
 *
 * @since 0.1.0
 * @category models
 */
export class VolumeInfo extends Schema.Class<VolumeInfo>("VolumeInfo")({
  name: Schema.String,
  kind: VolumeKind,
  backendKind: BackendKind,
  quotaMib: Schema.OptionFromNullOr(Mebibytes),
  capacityMib: Schema.OptionFromNullOr(Mebibytes),
  labels: Schema.Array(Label),
  createdAt: Schema.DateTimeUtc,
  /** Real usage: apparent bytes of files and symlinks, or allocated bytes of a disk image. */
  usedBytes: Schema.Number,
  /** The full usage figures, on backends that keep them. */
  usage: Schema.optional(VolumeUsage),
  /** When `Volume.prune({ expired: true })` may remove the volume (nothing happens at that time). */
  expiresAt: Schema.optionalWith(Schema.OptionFromNullOr(Schema.DateTimeUtc), { default: () => Option.none(), exact: true }),
  /** When a holder (a sandbox) last acquired or let go of the volume. */
  lastUsedAt: Schema.optionalWith(Schema.OptionFromNullOr(Schema.DateTimeUtc), { default: () => Option.none(), exact: true }),
  /** The raw image of a disk volume, on backends that have one on the host. */
  diskPath: Schema.OptionFromNullOr(Schema.String),
  local: Schema.OptionFromNullOr(LocalState),
  cloud: Schema.OptionFromNullOr(CloudState)
}) {}

/**
 * What a backend reports about one snapshot of a volume (SPEC §9).
 *
 * @since 0.2.0
 * @category models
 */
export class SnapshotInfo extends Schema.Class<SnapshotInfo>("SnapshotInfo")({
  /** Display name of the volume the snapshot was taken of. */
  volume: Schema.String,
  /** The snapshot's name (volume-name rules, compared case-insensitively). */
  name: Schema.String,
  kind: VolumeKind,
  /** Size of a disk volume's image, for forks. */
  capacityMib: Schema.OptionFromNullOr(Mebibytes),
  labels: Schema.Array(Label),
  createdAt: Schema.DateTimeUtc,
  expiresAt: Schema.OptionFromNullOr(Schema.DateTimeUtc),
  /** Usage of the content, measured as for volumes. */
  usedBytes: Schema.Number,
  /** The host directory or image holding the content (local backend). */
  hostPath: Schema.OptionFromNullOr(Schema.String)
}) {}

/**
 * How far a snapshot, fork or restore copy has got: bytes and files (regular files and
 * symlinks; a disk volume's image counts as one file) copied so far and in all. Figures
 * never go backwards, and the last report of a copy that succeeded has `copiedBytes ===
 * totalBytes` and `copiedFiles === totalFiles`. docs/snapshots.md says how often each
 * backend reports.
 *
 * @since 0.2.0
 * @category models
 */
export interface CopyProgress {
  readonly copiedBytes: number
  readonly totalBytes: number
  readonly copiedFiles: number
  readonly totalFiles: number
}

/**
 * Receives {@link CopyProgress} reports of one copy, one at a time. It runs on the copy's
 * path: keep it quick (draw a bar, store a figure).
 *
 * @since 0.2.0
 * @category models
 */
export type OnCopyProgress = (progress: CopyProgress) => Effect.Effect<void>

/**
 * A validated request to snapshot a volume.
 *
 * @since 0.2.0
 * @category models
 */
export interface SnapshotRequest {
  readonly name: string
  readonly labels: ReadonlyArray<readonly [string, string]>
  readonly createdAt: DateTime.Utc
  readonly expiresAt: Option.Option<DateTime.Utc>
  /** Copy a directory volume that a sandbox holds read-write, file by file. */
  readonly live: boolean
  /** Told how far the copy has got. */
  readonly onProgress?: OnCopyProgress | undefined
}

/**
 * What `Volume.fork` asks for; the target's spec is derived from the source by the
 * backend (`internal/forkSpec.ts`).
 *
 * @since 0.2.0
 * @category models
 */
export interface ForkRequest {
  /** The new volume's name (validated by the backend with the rest of its spec). */
  readonly target: string
  /** Replace the source's labels. */
  readonly labels: Option.Option<ReadonlyArray<readonly [string, string]>>
  /** Replace the source's quota (MiB). */
  readonly quotaMib: Option.Option<number>
  /** Copy a source a sandbox holds read-write, file by file. */
  readonly live: boolean
  /** Told how far the copy has got. */
  readonly onProgress?: OnCopyProgress | undefined
}

/**
 * What `Volume.restore` asks for besides the names.
 *
 * @since 0.2.0
 * @category models
 */
export interface RestoreRequest {
  /** Told how far the copy of the snapshot's content has got. */
  readonly onProgress?: OnCopyProgress | undefined
}

/**
 * Snapshots, forks and restores of one backend's volumes. Names are validated before a
 * backend sees them.
 *
 * @since 0.2.0
 * @category models
 */
export interface VolumeSnapshotsService {
  /** Copies the volume's content into a new snapshot, visible whole or not at all. */
  readonly create: (
    volume: string,
    request: SnapshotRequest
  ) => Effect.Effect<SnapshotInfo, VolumeNotFound | SnapshotAlreadyExists | VolumeInUse | InvalidConfig | StorageError>
  /** The volume's snapshots, newest first. */
  readonly list: (volume: string) => Effect.Effect<ReadonlyArray<SnapshotInfo>, VolumeNotFound | StorageError>
  readonly get: (volume: string, snapshot: string) => Effect.Effect<SnapshotInfo, VolumeNotFound | SnapshotNotFound | StorageError>
  readonly remove: (
    volume: string,
    snapshot: string
  ) => Effect.Effect<void, VolumeNotFound | SnapshotNotFound | VolumeInUse | StorageError>
  /**
   * Creates `target` with the content of `source` (or of its snapshot): whole, or not at
   * all; `VolumeAlreadyExists` changes nothing.
   */
  readonly fork: (
    source: string,
    snapshot: Option.Option<string>,
    request: ForkRequest
  ) => Effect.Effect<
    VolumeInfo,
    | VolumeNotFound
    | SnapshotNotFound
    | VolumeAlreadyExists
    | VolumeInUse
    | QuotaExceeded
    | InvalidConfig
    | Unsupported
    | StorageError
  >
  /**
   * Replaces the volume's content with the snapshot's. Refused while anyone holds it.
   */
  readonly restore: (
    volume: string,
    snapshot: string,
    request?: RestoreRequest
  ) => Effect.Effect<void, VolumeNotFound | SnapshotNotFound | VolumeInUse | QuotaExceeded | StorageError>
  /** Read-only file access to a snapshot. */
  readonly fs: (snapshot: SnapshotInfo) => VolumeFs
}

/**
 * How a holder uses a volume: a disk volume has one `"rw"` holder or any number of `"ro"`
 * ones; a directory volume any number of either. An `"exclusive"` holder (an archive
 * import) is the volume's only holder, of either kind: it is refused while anyone holds the
 * volume, and everyone else is refused while it does.
 *
 * @since 0.1.0
 * @category models
 */
export type HoldMode = "rw" | "ro" | "exclusive"

/**
 * Who holds which volume, recorded where every process (and, for a shared store, every
 * machine) sharing the backend sees it, so `remove`, `rename` and `prune` refuse while a
 * volume is held. A holder that dies stops counting: local records name their process,
 * cloud records are leases its holder keeps renewing.
 *
 * @since 0.1.0
 * @category models
 */
export interface VolumeHolders {
  /**
   * Holds volume `name` until the scope closes. Fails with `VolumeInUse` when the sharing
   * rules forbid it and `VolumeNotFound` when the volume does not exist.
   */
  readonly acquire: (
    name: string,
    holder: string,
    mode: HoldMode
  ) => Effect.Effect<void, VolumeInUse | VolumeNotFound | StorageError, Scope.Scope>
  /** The live holders of volume `name` (empty when nobody holds it or it does not exist). */
  readonly list: (name: string) => Effect.Effect<ReadonlyArray<string>, StorageError>
}

/**
 * A writer of a directory volume's quota outside the library's own file access: a sandbox's
 * file server (docs/sandboxes.md, "Quota"). It holds a *balance* of bytes granted from the
 * volume's usage account and spends it on growth; granted bytes count as used at once, for
 * host-side writes and every other writer, until given back. Measurements of the volume add
 * the balances of live writers to what they walked. Lives in a scope: closing it forgets the
 * writer (a balance not given back stays counted until the next measurement).
 *
 * @since 0.3.0
 * @category models
 */
export interface QuotaGrants {
  /**
   * Reserves up to `want` bytes of the quota, at least `min` (else nothing). `balance`: the
   * bytes of earlier grants the writer has not spent yet. Yields the bytes granted (0 when
   * fewer than `min` fit) and the volume's usage with every reservation (bytes).
   */
  readonly grant: (
    want: number,
    min: number,
    balance: number
  ) => Effect.Effect<{ readonly granted: number; readonly usedBytes: number }, StorageError>
  /** Gives back `bytes` of earlier grants; `balance`: what the writer still holds after. Yields the usage. */
  readonly giveBack: (bytes: number, balance: number) => Effect.Effect<number, StorageError>
}

/**
 * The settings of a volume that `Volume.update` changes in place.
 *
 * @since 0.1.0
 * @category models
 */
export interface VolumeSettings {
  readonly labels: ReadonlyArray<readonly [string, string]>
  readonly quotaMib: Option.Option<Mebibytes>
  readonly expiresAt: Option.Option<DateTime.Utc>
}

/**
 * The backend operations `Volume` builds on. Names are validated and specs checked
 * before a backend sees them; names compare case-insensitively.
 *
 * @since 0.1.0
 * @category models
 */
export interface VolumeBackendService {
  readonly backendKind: BackendKind
  /** Creates the volume whole, or fails leaving nothing behind. */
  readonly create: (spec: ValidSpec) => Effect.Effect<VolumeInfo, VolumeAlreadyExists | Unsupported | StorageError>
  /**
   * One volume with current usage: kept current by the library's own writes, re-measured
   * when something the library did not see may have changed it (a sandbox held it, a
   * writer crashed).
   */
  readonly get: (name: string) => Effect.Effect<VolumeInfo, VolumeNotFound | StorageError>
  /**
   * Re-measures a volume's usage from its files (walking the tree) and stores it; for
   * changes the library cannot see, such as writes made directly in the host directory
   * that `path()` returns. Backends whose usage is always exact may leave it out.
   */
  readonly measure?: ((name: string) => Effect.Effect<VolumeInfo, VolumeNotFound | StorageError>) | undefined
  /** Every volume; usage may be the last measurement. */
  readonly list: Effect.Effect<ReadonlyArray<VolumeInfo>, StorageError>
  /** Removes the record and the data together. */
  readonly remove: (name: string) => Effect.Effect<void, VolumeNotFound | VolumeInUse | Unsupported | StorageError>
  /** The store's always-present default volume, where the backend has one. */
  readonly getDefault: Effect.Effect<VolumeInfo, Unsupported | StorageError>
  /** File access inside the volume. */
  readonly fs: (volume: VolumeInfo) => VolumeFs
  /**
   * Changes a volume's settings atomically: `change` maps the current state to the new
   * settings (or refuses); a concurrent update is never lost (`change` runs again on it).
   */
  readonly update: (
    name: string,
    change: (current: VolumeInfo) => Either.Either<VolumeSettings, InvalidConfig>
  ) => Effect.Effect<VolumeInfo, VolumeNotFound | InvalidConfig | StorageError>
  /**
   * Gives a disk volume a size of `sizeMib` MiB, growing its file system with the data
   * kept (SPEC §10; the rules are `internal/diskGrow.ts`): `InvalidConfig` for a
   * directory volume or a smaller size, `VolumeInUse` while anyone holds it (a sandbox,
   * or the host's own open `fs()` access). The same size changes nothing.
   */
  readonly grow: (
    name: string,
    sizeMib: Mebibytes
  ) => Effect.Effect<VolumeInfo, VolumeNotFound | VolumeInUse | InvalidConfig | StorageError>
  /**
   * Renames volume `from` to `to` (validated, of another name key): its data, settings
   * and snapshots move with the name, all or nothing. `VolumeAlreadyExists` when `to`
   * exists (a name differing only in case is the same name), `VolumeInUse` while anyone
   * holds `from`, on any process or machine sharing the store; nothing changes on any error.
   */
  readonly rename: (
    from: string,
    to: string
  ) => Effect.Effect<VolumeInfo, VolumeNotFound | VolumeAlreadyExists | VolumeInUse | Unsupported | StorageError>
  /** Records that the volume is used now (`lastUsedAt`); a missing volume is no error. */
  readonly touch: (name: string) => Effect.Effect<void, StorageError>
  /** Who holds which volume (§10 "Holders"); acquiring and letting go both `touch` the volume. */
  readonly holders: VolumeHolders
  /** The host directory holding a directory volume's files. */
  readonly path: (volume: VolumeInfo) => Effect.Effect<string, Unsupported | VolumeNotFound | StorageError>
  /** Snapshots, forks and restores (SPEC §9). */
  readonly snapshots: VolumeSnapshotsService
  /**
   * A writer of the quota of directory volume `name` (see {@link QuotaGrants}) for the scope's
   * lifetime. Backends that keep no shared usage account leave
   * it out (their sandbox mounts are snapshots, committed through `fs()`).
   */
  readonly quotaGrants?:
    | ((name: string) => Effect.Effect<QuotaGrants, VolumeNotFound | StorageError, Scope.Scope>)
    | undefined
}

/**
 * The backend in use.
 *
 * @since 0.1.0
 * @category tags
 */
export class VolumeBackend extends Context.Tag("effect-volumes/VolumeBackend")<VolumeBackend, VolumeBackendService>() {}
