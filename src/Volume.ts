/**
 * Named volumes: create, get, list and remove them, and reach their files.
 *
 * @since 0.1.0
 */
import { DateTime, Duration, Effect, Either, Option } from "effect"
import type { Mebibytes, SizeInput } from "./Size.js"
import * as Size from "./Size.js"
import { BYTES_PER_MIB } from "./Size.js"
import type {
  BackendKind,
  CloudState,
  CopyProgress as BackendCopyProgress,
  LocalState,
  VolumeBackendService,
  VolumeInfo,
  VolumeSettings
} from "./VolumeBackend.js"
import { VolumeBackend } from "./VolumeBackend.js"
import type { Unsupported, VolumeAlreadyExists } from "./VolumeError.js"
import { InvalidConfig, SnapshotNotFound, StorageError, VolumeInUse, VolumeNotFound } from "./VolumeError.js"
import type { VolumeFs } from "./VolumeFs.js"
import * as VolumeSnapshot from "./VolumeSnapshot.js"
import type { VolumeKind } from "./VolumeSpec.js"
import * as VolumeSpec from "./VolumeSpec.js"
import { compatible } from "./internal/mount/validation.js"
import * as SnapshotPrune from "./internal/snapshotPrune.js"
import type { Mutable } from "./internal/trustedClass.js"

/**
 * A volume: its identity, where it lives, and access to its files.
 *
 * @since 0.1.0
 * @category models
 */
export interface Volume {
  readonly name: string
  readonly kind: VolumeKind
  readonly backendKind: BackendKind
  /** The raw image of a disk volume (local backend). */
  readonly diskPath: Option.Option<string>
  /** Size of a disk volume's image in bytes. */
  readonly capacityBytes: Option.Option<number>
  /** `"raw"` for disk volumes. */
  readonly diskFormat: Option.Option<"raw">
  /** `"ext4"` for disk volumes. */
  readonly diskFstype: Option.Option<"ext4">
  readonly local: Option.Option<LocalState>
  readonly cloud: Option.Option<CloudState>
  /** Host-side file access, no sandbox needed. */
  readonly fs: () => VolumeFs
  /** The host directory of a directory volume's files (`Unsupported` elsewhere). */
  readonly path: () => Effect.Effect<string, Unsupported | VolumeNotFound | StorageError>
}

/**
 * A volume with its bookkeeping: usage, quota, labels, creation time.
 *
 * @since 0.1.0
 * @category models
 */
export interface VolumeHandle extends Volume {
  /** Real usage in bytes (see `docs/volumes.md`). */
  readonly usedBytes: number
  readonly quotaMib: Option.Option<Mebibytes>
  readonly labels: ReadonlyArray<readonly [string, string]>
  readonly createdAt: DateTime.Utc
  /** When `Volume.prune({ expired: true })` may remove the volume; nothing happens at that time. */
  readonly expiresAt: Option.Option<DateTime.Utc>
  /** When a sandbox last attached or detached the volume (`None`: never). */
  readonly lastUsedAt: Option.Option<DateTime.Utc>
  /** The backend's report this handle was made from. */
  readonly info: VolumeInfo
  readonly remove: () => Effect.Effect<void, VolumeNotFound | VolumeInUse | Unsupported | StorageError>
}

/**
 * A handle's data are its own fields; `fs`, `path` and `remove` come from the prototype
 * as getters that return functions bound to the handle, so they still work taken off it
 * (`const { fs } = handle`) and a `list` of 10,000 volumes makes no closures up front.
 */
// The handle's data fields, declared once (by VolumeHandle) for the class below.
interface Handle extends Omit<VolumeHandle, "fs" | "path" | "remove"> {}

class Handle implements VolumeHandle {
  readonly #backend: VolumeBackendService
  #fs: VolumeFs | undefined

  constructor(backend: VolumeBackendService, info: VolumeInfo) {
    const isDisk = info.kind === "disk"
    this.#backend = backend
    const self = this as Mutable<Handle>
    self.name = info.name
    self.kind = info.kind
    self.backendKind = info.backendKind
    self.diskPath = info.diskPath
    self.capacityBytes = Option.map(info.capacityMib, (mib) => mib * BYTES_PER_MIB)
    self.diskFormat = isDisk ? Option.some("raw") : Option.none()
    self.diskFstype = isDisk ? Option.some("ext4") : Option.none()
    self.local = info.local
    self.cloud = info.cloud
    self.usedBytes = info.usedBytes
    self.quotaMib = info.quotaMib
    self.labels = info.labels
    self.createdAt = info.createdAt
    self.expiresAt = info.expiresAt
    self.lastUsedAt = info.lastUsedAt
    self.info = info
  }

  get fs(): () => VolumeFs {
    return () => (this.#fs ??= this.#backend.fs(this.info))
  }

  get path(): () => Effect.Effect<string, Unsupported | VolumeNotFound | StorageError> {
    return () => this.#backend.path(this.info)
  }

  get remove(): () => Effect.Effect<void, VolumeNotFound | VolumeInUse | Unsupported | StorageError> {
    return () => removeWith(this.#backend, this.info.name, {})
  }
}

const makeHandle = (backend: VolumeBackendService, info: VolumeInfo): VolumeHandle => new Handle(backend, info)

/**
 * Label filter of {@link list}: every key must be present; a defined value must match.
 *
 * @since 0.1.0
 * @category models
 */
export interface ListFilter {
  readonly labels?: Readonly<Record<string, string | undefined>>
}

/**
 * An immutable description of a volume to create; every setter returns a new builder.
 *
 * @since 0.1.0
 * @category constructors
 */
export class VolumeBuilder {
  private constructor(
    private readonly spec: VolumeSpec.VolumeSpec,
    /** Sizes given as strings that did not parse; `create()` reports the first. */
    private readonly problems: ReadonlyArray<InvalidConfig> = [],
    private readonly expiry: Option.Option<Duration.Duration> = Option.none()
  ) {}

  /** A directory builder for `name`. */
  static make(name: string): VolumeBuilder {
    return new VolumeBuilder(
      new VolumeSpec.VolumeSpec({ name, kind: "directory", quotaMib: Option.none(), capacityMib: Option.none(), labels: [] })
    )
  }

  private with(patch: Partial<VolumeSpec.VolumeSpec>, problems = this.problems): VolumeBuilder {
    return new VolumeBuilder(new VolumeSpec.VolumeSpec({ ...this.spec, ...patch }, { disableValidation: true }), problems, this.expiry)
  }

  /** A size setter's value: a number is checked by `create()`, a string is parsed now. */
  private sized(field: "quotaMib" | "capacityMib", size: SizeInput): VolumeBuilder {
    if (typeof size === "number") return this.with({ [field]: Option.some(size) })
    return Either.match(Size.parse(size), {
      onLeft: (problem) => this.with({ [field]: Option.none() }, [...this.problems, problem]),
      onRight: (mib) => this.with({ [field]: Option.some(mib) })
    })
  }

  /**
   * The volume expires `duration` after it is created: `Volume.prune({ expired: true })`
   * may remove it from then on (nothing happens at that time). A crash between creating
   * the volume and recording its expiry leaves it without one, never the other way round.
   */
  expiresIn(duration: Duration.DurationInput): VolumeBuilder {
    return new VolumeBuilder(this.spec, this.problems, Option.some(Duration.decode(duration)))
  }

  /** Records the expiry on a volume this builder just created. */
  private expire(handle: VolumeHandle) {
    const expiry = this.expiry
    return Option.match(expiry, {
      onNone: () => Effect.succeed(handle),
      onSome: (duration) =>
        Effect.flatMap(DateTime.now, (now) =>
          updateSettings(handle.name, { expiresAt: Option.some(DateTime.addDuration(now, duration)) }).pipe(
            // Removed by someone else right after it was created.
            Effect.catchTag("VolumeNotFound", () => Effect.succeed(handle))
          ))
    })
  }

  /** A directory volume (the default): files on the host. */
  directory(): VolumeBuilder {
    return this.with({ kind: "directory" })
  }

  /** A disk volume: a raw ext4 image of a fixed `size`. */
  disk(): VolumeBuilder {
    return this.with({ kind: "disk" })
  }

  /** Size of a disk volume: MiB (`64`, `Size.gib(1)`) or a string (`"1G"`); bad sizes fail `create()` with `InvalidConfig`. */
  size(size: SizeInput): VolumeBuilder {
    return this.sized("capacityMib", size)
  }

  /** Quota of a directory volume: MiB or a string (`"512M"`); bad sizes fail `create()` with `InvalidConfig`. */
  quota(size: SizeInput): VolumeBuilder {
    return this.sized("quotaMib", size)
  }

  /** Adds a label; a repeated key keeps the last value. */
  label(key: string, value: string): VolumeBuilder {
    return this.with({ labels: [...this.spec.labels, [key, value] as const] })
  }

  /** The spec as built, not validated. */
  build(): VolumeSpec.VolumeSpec {
    return this.spec
  }

  /** Validates and creates the volume. */
  create(): Effect.Effect<VolumeHandle, VolumeAlreadyExists | InvalidConfig | Unsupported | StorageError, VolumeBackend> {
    const [problem] = this.problems
    if (problem !== undefined) return Effect.fail(problem)
    return Effect.flatMap(create(this.spec), (handle) => this.expire(handle))
  }

  /** The existing volume if it is compatible with this builder, else creates it (see {@link getOrCreate}). */
  getOrCreate(): Effect.Effect<VolumeHandle, InvalidConfig | Unsupported | StorageError, VolumeBackend> {
    return Effect.gen(this, function*() {
      const [problem] = this.problems
      if (problem !== undefined) return yield* problem
      const resolution = yield* resolve(this.spec)
      const handle = yield* compatibleHandle(resolution)
      return resolution.created ? yield* this.expire(handle) : handle
    })
  }
}

/**
 * Starts describing a volume named `name`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const builder = (name: string): VolumeBuilder => VolumeBuilder.make(name)

/**
 * Validates `spec` and creates the volume: it appears whole or not at all, and exactly
 * one of several concurrent creators of a name wins.
 *
 * @since 0.1.0
 * @category constructors
 */
export const create = Effect.fn("Volume.create")(function*(spec: VolumeSpec.VolumeSpec) {
  const valid = yield* VolumeSpec.validate(spec)
  const backend = yield* VolumeBackend
  return makeHandle(backend, yield* backend.create(valid))
})

/** Names that break the naming rule cannot exist anywhere. */
const existingName = (name: string) =>
  Option.isSome(VolumeSpec.nameProblem(name)) ? Effect.fail(new VolumeNotFound({ volume: String(name) })) : Effect.succeed(name)

/**
 * One volume, with current usage (see {@link measure}).
 *
 * @since 0.1.0
 * @category accessors
 */
export const get = Effect.fn("Volume.get")(function*(name: string) {
  const backend = yield* VolumeBackend
  return makeHandle(backend, yield* backend.get(yield* existingName(name)))
})

/**
 * One volume with its usage re-measured from its files. `get` reports the usage the
 * library keeps current from its own writes (and from sandboxes when they detach); use
 * `measure` after changing files behind the library's back, e.g. directly in the host
 * directory that `path()` returns.
 *
 * @since 0.2.0
 * @category accessors
 */
export const measure = Effect.fn("Volume.measure")(function*(name: string) {
  const backend = yield* VolumeBackend
  const valid = yield* existingName(name)
  return makeHandle(backend, yield* (backend.measure === undefined ? backend.get(valid) : backend.measure(valid)))
})

const matches = (labels: ReadonlyArray<readonly [string, string]>, filter: ListFilter): boolean => {
  if (filter.labels === undefined) return true
  const own = new Map(labels)
  return Object.entries(filter.labels).every(([key, value]) =>
    own.has(key) && (value === undefined || own.get(key) === value)
  )
}

/**
 * Every volume matching the filter, newest first.
 *
 * @since 0.1.0
 * @category accessors
 */
export const list = Effect.fn("Volume.list")(function*(filter: ListFilter = {}) {
  const backend = yield* VolumeBackend
  const infos = yield* backend.list
  return infos
    .filter((info) => matches(info.labels, filter))
    .sort((a, b) => DateTime.toEpochMillis(b.createdAt) - DateTime.toEpochMillis(a.createdAt) || byName(a.name, b.name))
    .map((info) => makeHandle(backend, info))
})

/** `localeCompare`'s order, from one collator (a `localeCompare` per comparison costs more). */
const byName = new Intl.Collator().compare

/** A volume with snapshots is in use by them unless they go too. */
const removeWith = (backend: VolumeBackendService, name: string, options: VolumeSnapshot.RemoveOptions) =>
  Effect.gen(function*() {
    // A volume that is gone may still have a removal to finish (the S3 backend's tombstones):
    // the backend's own remove decides between finishing it and VolumeNotFound.
    const snapshots = yield* backend.snapshots.list(name).pipe(
      Effect.catchTag("VolumeNotFound", () => Effect.succeed([]))
    )
    if (snapshots.length > 0 && options.withSnapshots !== true) {
      return yield* new VolumeInUse({ volume: name, holders: snapshots.map((snapshot) => `snapshot ${snapshot.name}`) })
    }
    for (const snapshot of snapshots) {
      yield* backend.snapshots.remove(name, snapshot.name).pipe(Effect.catchTag("SnapshotNotFound", () => Effect.void))
    }
    yield* backend.remove(name)
  })

/**
 * Removes a volume: the record and the data go together. Refused while a running
 * sandbox has it mounted, and while it has snapshots unless `withSnapshots` is set
 * (then they are removed first).
 *
 * @since 0.1.0
 * @category destructors
 */
export const remove = Effect.fn("Volume.remove")(function*(name: string, options: VolumeSnapshot.RemoveOptions = {}) {
  const backend = yield* VolumeBackend
  yield* removeWith(backend, yield* existingName(name), options)
})

/**
 * Renames a volume: its files, labels, quota, expiry and snapshots move to the new name
 * in one step, and a crash at any point leaves exactly one of the two names. Fails with
 * `InvalidConfig` for an invalid new name, `VolumeNotFound` when `from` does not exist,
 * `VolumeAlreadyExists` when `to` does (names that differ only in case are the same name),
 * `VolumeInUse` while a sandbox holds the volume in any process or on any machine sharing
 * the store; nothing changes on any error. Handles of the old name stop working.
 *
 * @since 0.2.0
 * @category combinators
 */
export const rename = Effect.fn("Volume.rename")(function*(from: string, to: string) {
  const backend = yield* VolumeBackend
  const target = yield* VolumeSpec.validateName(to)
  return makeHandle(backend, yield* backend.rename(yield* existingName(from), target))
})

/**
 * The store's always-present default volume (cloud backend); `Unsupported` on local.
 *
 * @since 0.1.0
 * @category accessors
 */
export const getDefault = Effect.fn("Volume.getDefault")(function*() {
  const backend = yield* VolumeBackend
  return makeHandle(backend, yield* backend.getDefault)
})

// ---------------------------------------------------------------------------
// snapshots and forks (SPEC §9)
// ---------------------------------------------------------------------------

/** Snapshot names that break the naming rule cannot exist. */
const existingSnapshot = (volume: string, snapshot: string) =>
  Option.isSome(VolumeSpec.nameProblem(snapshot))
    ? Effect.fail(new SnapshotNotFound({ volume, snapshot: String(snapshot) }))
    : Effect.succeed(snapshot)

/** How many later default names `snapshot` tries when two snapshots share a millisecond. */
const DEFAULT_NAME_ATTEMPTS = 5

/**
 * The moment a default-named snapshot is stamped with: now, or one millisecond after the
 * volume's newest snapshot when that is not earlier, so default names sort in creation
 * order even within one millisecond.
 */
const nextDefaultMoment = (backend: VolumeBackendService, volume: string) =>
  Effect.gen(function*() {
    const now = yield* DateTime.now
    // Backends list in no promised order: take the latest createdAt of all.
    return (yield* backend.snapshots.list(volume)).reduce((latest, snapshot) => {
      const after = DateTime.add(snapshot.createdAt, { millis: 1 })
      return DateTime.greaterThan(after, latest) ? after : latest
    }, now)
  })

/**
 * Takes a read-only, point-in-time snapshot of the volume's content. It appears whole or
 * not at all; a volume a running sandbox holds read-write is refused with `VolumeInUse`
 * unless `live` asks for a file-by-file copy (directory volumes).
 *
 * @since 0.2.0
 * @category snapshots
 */
export const snapshot = Effect.fn("Volume.snapshot")(function*(name: string, options: VolumeSnapshot.SnapshotOptions = {}) {
  const backend = yield* VolumeBackend
  const volume = yield* existingName(name)
  const labels = yield* VolumeSnapshot.validateLabels(options.labels)
  if (options.name !== undefined) yield* VolumeSnapshot.validateName(options.name)
  if (options.live === true && (yield* backend.get(volume)).kind === "disk") {
    return yield* new InvalidConfig({
      message: `volume "${volume}": live snapshots are for directory volumes; stop the sandbox holding the disk volume first`
    })
  }
  const expiresIn = options.expiresIn === undefined ? Option.none() : Option.some(Duration.decode(options.expiresIn))
  for (let attempt = 0;; attempt++) {
    const createdAt = options.name === undefined ? yield* nextDefaultMoment(backend, volume) : yield* DateTime.now
    const request = {
      name: options.name ?? VolumeSnapshot.defaultName(createdAt),
      labels,
      createdAt,
      expiresAt: Option.map(expiresIn, (duration) => DateTime.addDuration(createdAt, duration)),
      live: options.live === true,
      onProgress: options.onProgress
    }
    const created = yield* backend.snapshots.create(volume, request).pipe(
      Effect.map(Option.some),
      // A default name taken by a snapshot of the same millisecond: take the next one.
      Effect.catchTag("SnapshotAlreadyExists", (error) =>
        options.name === undefined && attempt < DEFAULT_NAME_ATTEMPTS ? Effect.succeedNone : Effect.fail(error))
    )
    if (Option.isSome(created)) return VolumeSnapshot.make(backend, created.value)
  }
})

/**
 * The volume's snapshots, newest first.
 *
 * @since 0.2.0
 * @category snapshots
 */
export const snapshots = Effect.fn("Volume.snapshots")(function*(name: string) {
  const backend = yield* VolumeBackend
  const infos = yield* backend.snapshots.list(yield* existingName(name))
  return [...infos]
    .sort((a, b) =>
      DateTime.toEpochMillis(b.createdAt) - DateTime.toEpochMillis(a.createdAt) || b.name.localeCompare(a.name)
    )
    .map((info) => VolumeSnapshot.make(backend, info))
})

/**
 * One snapshot of a volume.
 *
 * @since 0.2.0
 * @category snapshots
 */
export const getSnapshot = Effect.fn("Volume.getSnapshot")(function*(name: string, snapshot: string) {
  const backend = yield* VolumeBackend
  const volume = yield* existingName(name)
  return VolumeSnapshot.make(backend, yield* backend.snapshots.get(volume, yield* existingSnapshot(volume, snapshot)))
})

/**
 * Removes one snapshot.
 *
 * @since 0.2.0
 * @category snapshots
 */
export const removeSnapshot = Effect.fn("Volume.removeSnapshot")(function*(name: string, snapshot: string) {
  const backend = yield* VolumeBackend
  const volume = yield* existingName(name)
  yield* backend.snapshots.remove(volume, yield* existingSnapshot(volume, snapshot))
})

/**
 * Creates `target`, a new volume of the source's kind, capacity, quota and labels
 * (`labels` and `quota` override them) whose content is the source's (or its snapshot's)
 * at the moment of the call. The two never affect each other afterwards. A target that
 * exists fails with `VolumeAlreadyExists` and nothing changes; a fork that fails half way
 * leaves no target.
 *
 * @since 0.2.0
 * @category snapshots
 */
export const fork = Effect.fn("Volume.fork")(function*(
  source: string,
  target: string,
  options: VolumeSnapshot.ForkOptions = {}
) {
  const backend = yield* VolumeBackend
  const from = yield* existingName(source)
  const snapshotName = options.snapshot === undefined
    ? Option.none<string>()
    : Option.some(yield* existingSnapshot(from, options.snapshot))
  const labels = options.labels === undefined
    ? Option.none()
    : Option.some(yield* VolumeSnapshot.validateLabels(options.labels))
  const request = {
    target,
    labels,
    quotaMib: Option.fromNullable(options.quota),
    live: options.live === true,
    onProgress: options.onProgress
  }
  return makeHandle(backend, yield* backend.snapshots.fork(from, snapshotName, request))
})

/**
 * Makes the volume's content the snapshot's, atomically where the backend can (see
 * docs/snapshots.md). Refused with `VolumeInUse` while any sandbox holds the volume.
 * `onProgress` is told how far the copy of the snapshot's content has got.
 *
 * @since 0.2.0
 * @category snapshots
 */
export const restore = Effect.fn("Volume.restore")(function*(
  name: string,
  snapshot: string,
  options: VolumeSnapshot.RestoreOptions = {}
) {
  const backend = yield* VolumeBackend
  const volume = yield* existingName(name)
  yield* backend.snapshots.restore(volume, yield* existingSnapshot(volume, snapshot), { onProgress: options.onProgress })
})

/**
 * What {@link resolve} found: the volume, whether this call created it, and why an existing
 * one does not match the spec (`None` when it does).
 *
 * @since 0.1.0
 * @category models
 */
export interface Resolution {
  readonly handle: VolumeHandle
  readonly created: boolean
  readonly mismatch: Option.Option<string>
}

/**
 * Gets the volume `spec` names, creating it when missing (a concurrent creator that wins
 * the race makes this a get), and compares an existing one with the spec by the
 * `ensureExists` rule of named mounts. Never changes an existing volume.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolve = Effect.fn("Volume.resolve")(function*(spec: VolumeSpec.VolumeSpec) {
  const valid = yield* VolumeSpec.validate(spec)
  return yield* resolveValid(yield* VolumeBackend, valid, RESOLVE_ATTEMPTS)
})

/**
 * Rounds of get-then-create: a volume another caller is still creating exists for `create`
 * but not yet for `get`, so the loser waits for it (disk volumes take a while to format).
 */
const RESOLVE_ATTEMPTS = 1200
const RESOLVE_PAUSE = "25 millis"

const resolveValid = (
  backend: VolumeBackendService,
  valid: VolumeSpec.ValidSpec,
  attempts: number
): Effect.Effect<Resolution, Unsupported | StorageError> =>
  backend.get(valid.name).pipe(
    Effect.map((info): Resolution => ({ handle: makeHandle(backend, info), created: false, mismatch: compatible(info, valid) })),
    Effect.catchTag("VolumeNotFound", () =>
      backend.create(valid).pipe(
        Effect.map((info): Resolution => ({ handle: makeHandle(backend, info), created: true, mismatch: Option.none() })),
        // Someone else created it meanwhile: then it must be compatible like any existing one.
        Effect.catchTag("VolumeAlreadyExists", (error) =>
          attempts > 0
            ? Effect.zipRight(Effect.sleep(RESOLVE_PAUSE), resolveValid(backend, valid, attempts - 1))
            : Effect.fail(new StorageError({ message: `${error.message}, but it never became ready`, reason: "Conflict" })))
      ))
  )

/**
 * Idempotent create: the existing volume when it is compatible with `spec` (same kind and,
 * where the spec sets them, the same quota, size and label values), `InvalidConfig` naming
 * every mismatch otherwise, a new volume when there is none. Concurrent callers in any
 * process (and, on a shared store, any machine) all get the same volume.
 *
 * @since 0.1.0
 * @category constructors
 */
export const getOrCreate = Effect.fn("Volume.getOrCreate")(function*(spec: VolumeSpec.VolumeSpec | VolumeBuilder) {
  if (spec instanceof VolumeBuilder) return yield* spec.getOrCreate()
  return yield* compatibleHandle(yield* resolve(spec))
})

const compatibleHandle = (resolution: Resolution): Effect.Effect<VolumeHandle, InvalidConfig> =>
  Option.match(resolution.mismatch, {
    onNone: () => Effect.succeed(resolution.handle),
    onSome: (mismatch) =>
      Effect.fail(
        new InvalidConfig({
          message: `the existing volume ${JSON.stringify(resolution.handle.name)} does not match: ${mismatch}`
        })
      )
  })

/**
 * Which volumes {@link prune} removes: those matching every given condition.
 *
 * @since 0.1.0
 * @category models
 */
export interface PruneOptions {
  /** Every key must be present; a defined value must match (as in {@link list}). */
  readonly labels?: Readonly<Record<string, string | undefined>>
  /**
   * Only volumes whose `expiresAt` has passed. Expired snapshots (of every volume matching
   * `labels`) are removed too, first, so a volume whose snapshots all expired can go with them.
   */
  readonly expired?: boolean
  /** Only volumes no sandbox attached or detached for this long (never used: since creation). */
  readonly unusedFor?: Duration.DurationInput
  /** Report what would be removed without removing anything. */
  readonly dryRun?: boolean
}

/**
 * What {@link prune} removed (or, in a dry run, would remove) and what it left and why.
 *
 * @since 0.1.0
 * @category models
 */
export interface PruneResult {
  readonly removed: ReadonlyArray<string>
  /** Volumes, and snapshots named `volume@snapshot`, left with the reason. */
  readonly skipped: ReadonlyArray<{ readonly name: string; readonly reason: string }>
  /** Expired snapshots removed (with `expired: true` only). */
  readonly snapshots: ReadonlyArray<SnapshotRef>
}

/**
 * Removes every volume matching the options that nobody holds. A volume a sandbox holds —
 * in any process, or on any machine sharing the store — is skipped with the reason, as is
 * a volume the backend refuses to remove (the cloud store's default volume).
 *
 * @since 0.1.0
 * @category destructors
 */
export const prune = Effect.fn("Volume.prune")(function*(options: PruneOptions = {}) {
  const backend = yield* VolumeBackend
  const now = yield* DateTime.now
  const listed = yield* list(options.labels === undefined ? {} : { labels: options.labels })
  const unusedSince = Option.map(
    Option.fromNullable(options.unusedFor),
    (unusedFor) => DateTime.subtractDuration(now, Duration.decode(unusedFor))
  )
  const candidates = listed.filter((volume) =>
    (options.expired !== true || Option.exists(volume.expiresAt, (at) => DateTime.lessThanOrEqualTo(at, now))) &&
    Option.match(unusedSince, {
      onNone: () => true,
      onSome: (since) => DateTime.lessThanOrEqualTo(Option.getOrElse(volume.lastUsedAt, () => volume.createdAt), since)
    })
  )
  const removed: Array<string> = []
  const skipped: Array<{ readonly name: string; readonly reason: string }> = []
  const skip = (name: string) => (error: { readonly message: string }) =>
    Effect.sync(() => skipped.push({ name, reason: error.message }))
  const snapshots = options.expired === true
    ? yield* SnapshotPrune.pruneExpired(backend, listed.map((v) => v.name), { now, dryRun: options.dryRun === true })
    : { removed: [], skipped: [] }
  for (const left of snapshots.skipped) skipped.push({ name: `${left.volume}@${left.snapshot}`, reason: left.reason })
  for (const volume of candidates) {
    if (options.dryRun === true) {
      const holders = yield* backend.holders.list(volume.name)
      if (holders.length > 0) yield* skip(volume.name)(new VolumeInUse({ volume: volume.name, holders }))
      else removed.push(volume.name)
      continue
    }
    yield* backend.remove(volume.name).pipe(
      Effect.zipRight(Effect.sync(() => removed.push(volume.name))),
      Effect.catchTags({
        VolumeInUse: skip(volume.name),
        Unsupported: skip(volume.name),
        // Removed by someone else meanwhile: nothing left to prune.
        VolumeNotFound: () => Effect.void
      })
    )
  }
  return { removed, skipped, snapshots: snapshots.removed } satisfies PruneResult
})

/**
 * One snapshot by volume and name, as {@link pruneSnapshots} and {@link prune} report it.
 *
 * @since 0.1.0
 * @category models
 */
export type SnapshotRef = SnapshotPrune.SnapshotRef

/**
 * What {@link pruneSnapshots} removed (or, in a dry run, would remove) and what it skipped
 * (a snapshot a sandbox has mounted) and why.
 *
 * @since 0.1.0
 * @category models
 */
export type SnapshotPruneResult = SnapshotPrune.SnapshotPruneResult

/**
 * Removes the expired snapshots (`expiresAt` passed) of one volume, or of every volume.
 * They stay listed and usable until then. A snapshot a sandbox has mounted is skipped with
 * the reason. `dryRun` only reports.
 *
 * @since 0.1.0
 * @category snapshots
 */
export const pruneSnapshots = Effect.fn("Volume.pruneSnapshots")(function*(
  options: { readonly volume?: string | undefined; readonly dryRun?: boolean | undefined } = {}
) {
  const backend = yield* VolumeBackend
  const volumes = options.volume === undefined
    ? (yield* backend.list).map((info) => info.name)
    : [(yield* backend.get(yield* existingName(options.volume))).name]
  return yield* SnapshotPrune.pruneExpired(backend, volumes, { now: yield* DateTime.now, dryRun: options.dryRun === true })
})

/**
 * What {@link update} changes; what is left out stays as it is.
 *
 * @since 0.1.0
 * @category models
 */
export interface VolumeUpdate {
  /** Labels to add or overwrite, and keys to remove (removals apply first). */
  readonly labels?: {
    readonly set?: Readonly<Record<string, string>>
    readonly remove?: ReadonlyArray<string>
  }
  /** A new quota of a directory volume in MiB, or `None` to remove it. Lowering it below
   * the current usage is allowed: the volume is then over quota and refuses growth. */
  readonly quota?: Option.Option<number>
  /** When `prune({ expired: true })` may remove the volume, or `None` for never. */
  readonly expiresAt?: Option.Option<DateTime.Utc>
  /**
   * A new size of a disk volume, in MiB or as text (`Size.gib(20)`, `"20G"`): its image and ext4 file
   * system grow offline, the data kept. Only growing is allowed (`InvalidConfig` for a
   * smaller size or a directory volume); refused with `VolumeInUse` while a sandbox or an
   * open host-side `fs()` operation holds the volume. Applied before the other changes.
   */
  readonly size?: SizeInput
}

const applyUpdate = (current: VolumeInfo, change: VolumeUpdate) => {
  const labels = new Map(current.labels)
  for (const key of change.labels?.remove ?? []) labels.delete(key)
  for (const [key, value] of Object.entries(change.labels?.set ?? {})) labels.set(key, value)
  return Either.map(
    VolumeSpec.check(
      new VolumeSpec.VolumeSpec({
        name: current.name,
        kind: current.kind,
        quotaMib: change.quota ?? current.quotaMib,
        capacityMib: current.capacityMib,
        labels: Array.from(labels)
      }, { disableValidation: true })
    ),
    (valid): VolumeSettings => ({
      labels: valid.labels,
      quotaMib: valid.quotaMib,
      expiresAt: change.expiresAt ?? current.expiresAt
    })
  )
}

/**
 * Changes a volume's labels, quota and expiry in place, atomically (a concurrent update is
 * not lost), after growing a disk volume to `size` if one is given. Invalid results (labels
 * over the limits, a quota on a disk volume, a smaller size) fail with `InvalidConfig`;
 * `VolumeInUse` when the volume must grow while it is held.
 *
 * @since 0.1.0
 * @category combinators
 */
export const update = Effect.fn("Volume.update")(function*(name: string, change: VolumeUpdate) {
  if (change.size !== undefined) {
    const backend = yield* VolumeBackend
    const existing = yield* existingName(name)
    const size = yield* Either.mapLeft(
      Size.decode(change.size),
      (error) => new InvalidConfig({ message: `volume ${JSON.stringify(existing)}: ${error.message}` })
    )
    yield* backend.grow(existing, size)
  }
  return yield* updateSettings(name, change)
})

/** The in-place part of {@link update}: labels, quota, expiry. */
const updateSettings = (name: string, change: VolumeUpdate) =>
  Effect.gen(function*() {
    const backend = yield* VolumeBackend
    return makeHandle(backend, yield* backend.update(yield* existingName(name), (current) => applyUpdate(current, change)))
  })

/**
 * How far a snapshot, fork or restore copy has got (the `onProgress` option's reports).
 *
 * @since 0.2.0
 * @category models
 */
export type CopyProgress = BackendCopyProgress
