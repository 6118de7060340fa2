/**
 * The local backend: volume records in SQLite, volume data in host directories under
 * the home. Every lifecycle transition is one conditional statement on the record plus
 * renames between sibling directories, so several processes can share a home and a
 * crash at any point leaves something `recovery.ts` can finish.
 *
 * create: record `creating` (owned by this process) → build under `staging/` → rename
 * into `volumes/<key>` → record `ready`. remove: record `removing` (refused while held)
 * → rename to `trash/` → delete the record → empty the trash entry.
 */
import { FileSystem } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Clock, DateTime, Effect, Either, Option, RcMap } from "effect"
import type { Duration } from "effect"
import { touching } from "../touchingHolders.js"
import type { Scope } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { BYTES_PER_MIB } from "../../Size.js"
import { LocalState, VolumeInfo, VolumeUsage } from "../../VolumeBackend.js"
import type { VolumeBackendService } from "../../VolumeBackend.js"
import { StorageError, Unsupported, VolumeAlreadyExists, VolumeInUse, VolumeNotFound } from "../../VolumeError.js"
import type { VolumeFs } from "../../VolumeFs.js"
import { nameKey } from "../../VolumeSpec.js"
import type { VolumeKind } from "../../VolumeSpec.js"
import type { ValidSpec } from "../../VolumeSpec.js"
import type { FsDriver } from "../fsDriver.js"
import * as Usage from "../usage.js"
import * as UseStamps from "../useStamps.js"
import * as VolumeFsImpl from "../volumeFs.js"
import * as Attachments from "./attachments.js"
import { orStorageError, retryBusy } from "./database.js"
import { hostStep } from "./errno.js"
import { makeDirectoryDriver } from "./directoryDriver.js"
import { makeDiskDriver, makeDiskSessions } from "./diskDriver.js"
import { allocatedBytes, formatDiskImage } from "./diskImage.js"
import * as DiskResize from "./diskResize.js"
import * as Layout from "./layout.js"
import * as Liveness from "../liveness.js"
import * as Recovery from "./recovery.js"
import * as Rename from "./rename.js"
import * as LocalSnapshots from "./snapshots.js"
import { decodeRows, makeReportCache, ROW_COLUMNS } from "./records.js"
import type { VolumeRow } from "./records.js"
import * as Grants from "./grants.js"
import { makeTrusted } from "../trustedClass.js"
import type { Fields, Mutable } from "../trustedClass.js"
import * as UsageAccounts from "./usage.js"

/** Most host locations `toInfo` keeps made (one per volume key and kind). */
const LOCAL_STATE_CACHE_SIZE = 100_000

/** How long `create` waits for a live process to finish removing the same name. */
const REMOVAL_WAIT_ATTEMPTS = 500
const REMOVAL_WAIT = "20 millis"

/** Options of {@link make}. */
export interface LocalBackendSettings {
  /**
   * How long a disk image stays mounted after the last host-side operation on it, so a
   * burst of operations mounts it once. Another process attaching the volume meanwhile is
   * refused (`VolumeInUse`) for at most this long; a sandbox of this backend instance makes
   * the idle mount go at once. Default 0: released with the last operation.
   */
  readonly diskIdleTimeToLive?: Duration.DurationInput | undefined
}

export interface LocalBackend {
  readonly service: VolumeBackendService
  readonly attachments: Attachments.Attachments
}

export const make = (
  layout: Layout.Layout,
  settings: LocalBackendSettings = {}
): Effect.Effect<LocalBackend, StorageError, SqlClient.SqlClient | FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const fs = yield* FileSystem.FileSystem
    // Every hold of a volume first finishes a resize that a dead process left on it.
    const resize = yield* DiskResize.make(layout, yield* Attachments.make)
    const attachments = resize.attachments
    const accounts = yield* UsageAccounts.make
    /** One write lock per volume, shared by every `fs()` of it from this backend instance. */
    const writeLocks = VolumeFsImpl.makeWriteLocks()
    const recovery = yield* Recovery.make(layout, attachments)
    yield* recovery.recoverHome

    // ---- records ---------------------------------------------------------------------

    /**
     * The records `where` selects (an SQL condition with `?` placeholders for `params`),
     * each made into `A` by `make` (by default the checked row).
     */
    const selectRows = <A = VolumeRow>(
      where: string,
      params: ReadonlyArray<string> = [],
      make?: (values: ReadonlyArray<unknown>) => A | undefined
    ) =>
      sql.unsafe(`SELECT ${ROW_COLUMNS} FROM volumes WHERE ${where}`, params).values.pipe(
        orStorageError("reading volume records"),
        Effect.flatMap((rows) =>
          decodeRows(rows, make).pipe(
            Effect.mapError((cause) =>
              new StorageError({
                message: `the volume database ${layout.database} holds a record this version cannot read: ${cause.message}`,
                cause
              })
            )
          )
        )
      )

    const findRow = (key: string) =>
      Effect.map(selectRows("key = ?", [key]), (rows) => Option.fromNullable(rows[0]))

    const findReady = (key: string) => Effect.map(findRow(key), Option.filter((row) => row.state === "ready"))

    // Rows are checked by readRow, so the constructors need not validate again.
    const toInfo = (row: VolumeRow, usage: Usage.Usage): VolumeInfo => {
      const fields: Mutable<Fields<VolumeInfo>> = {
        name: row.name,
        kind: row.kind,
        backendKind: "local",
        quotaMib: Option.fromNullable(row.quota_mib),
        capacityMib: Option.fromNullable(row.capacity_mib),
        labels: row.labels,
        createdAt: DateTime.unsafeMake(row.created_at),
        expiresAt: Option.map(Option.fromNullable(row.expires_at), DateTime.unsafeMake),
        lastUsedAt: Option.map(Option.fromNullable(row.last_used_at), DateTime.unsafeMake),
        usedBytes: usage.logicalBytes,
        diskPath: row.kind === "disk" ? Option.some(Layout.diskImage(layout, row.key)) : Option.none(),
        local: localStateOf(row),
        cloud: Option.none()
      }
      // A disk volume's usage is its image's allocation; files inside are not counted.
      if (row.kind === "directory") fields.usage = makeTrusted(VolumeUsage, usage)
      return makeTrusted(VolumeInfo, fields)
    }

    /**
     * Where a volume lives on the host depends only on its key and kind, so the value is
     * made once and shared by every report of the volume (`list` reports them all).
     */
    const localStates = new Map<string, { readonly kind: VolumeKind; readonly state: Option.Option<LocalState> }>()
    const localStateOf = (row: VolumeRow): Option.Option<LocalState> => {
      const known = localStates.get(row.key)
      if (known !== undefined && known.kind === row.kind) return known.state
      if (localStates.size >= LOCAL_STATE_CACHE_SIZE) localStates.clear()
      const state = Option.some(
        new LocalState({
          home: layout.home,
          directory: Layout.volumeDir(layout, row.key),
          dataPath: row.kind === "directory" ? Option.some(Layout.dataDir(layout, row.key)) : Option.none()
        }, { disableValidation: true })
      )
      localStates.set(row.key, { kind: row.kind, state })
      return state
    }

    // ---- usage -----------------------------------------------------------------------

    /** The usage the record holds. */
    const storedUsage = (row: VolumeRow): Usage.Usage => ({
      logicalBytes: row.used_bytes,
      allocatedBytes: row.allocated_bytes,
      files: row.files
    })

    /** Usage of a disk volume: its image's allocated bytes (one `stat`, O(1)). */
    const diskUsage = (image: string) =>
      Effect.map(allocatedBytes(image), (bytes): Usage.Usage => ({ logicalBytes: bytes, allocatedBytes: bytes, files: 0 }))

    /**
     * Real usage of the volume whose files are under `root` (a volume dir, published or
     * staged), measured from the files. For a directory volume that no sandbox holds, the
     * same walk deletes the temporary files of crashed writers (not counted).
     */
    const measureAt = (kind: VolumeKind, root: string, name: string, sweep: boolean) =>
      Effect.suspend(() => {
        if (kind === "disk") return diskUsage(NodePath.join(root, Layout.DISK_IMAGE))
        const driver = makeDirectoryDriver({ root: NodePath.join(root, Layout.DATA_DIR), volume: name })
        return driver.measureUsage([], sweep ? Recovery.isAbandonedTemporary : undefined).pipe(
          Effect.mapError((cause) =>
            cause._tag === "StorageError" || cause._tag === "VolumeNotFound"
              ? cause
              : new StorageError({ message: `cannot measure volume "${name}": ${cause.message}`, cause })
          )
        )
      })

    // ---- create ----------------------------------------------------------------------

    /**
     * Inserts the `creating` record that makes this process the one creator of `key`.
     * Abandoned records of dead processes are discarded on the way; a live removal of
     * the same name is waited for.
     */
    const claimName = (
      spec: ValidSpec,
      key: string,
      self: Liveness.ProcessId,
      createdAt: number,
      restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
    ) =>
      Effect.gen(function*() {
        for (let attempt = 0;; attempt++) {
          const inserted = yield* sql<{ readonly key: string }>`INSERT INTO volumes
            (key, name, kind, quota_mib, capacity_mib, labels, created_at, used_bytes, state, owner_pid, owner_start)
            VALUES (${key}, ${spec.name}, ${spec.kind}, ${Option.getOrNull(spec.quotaMib)},
              ${Option.getOrNull(spec.capacityMib)}, ${JSON.stringify(spec.labels)}, ${createdAt}, 0,
              'creating', ${self.pid}, ${self.start})
            ON CONFLICT (key) DO NOTHING
            RETURNING key`.pipe(orStorageError(`recording volume "${spec.name}"`))
          if (inserted.length > 0) return
          const existing = yield* findRow(key)
          if (Option.isNone(existing)) continue
          const row = existing.value
          if (row.state === "ready") return yield* new VolumeAlreadyExists({ volume: spec.name })
          if (yield* recovery.takeOverAbandoned(row)) continue
          // Another live process is creating it: that one wins.
          if (row.state === "creating") return yield* new VolumeAlreadyExists({ volume: spec.name })
          if (attempt >= REMOVAL_WAIT_ATTEMPTS) {
            return yield* new StorageError({
              message:
                `volume "${row.name}" is still being removed by process ${row.owner_pid}; try again when it has finished`
            })
          }
          yield* restore(Effect.sleep(REMOVAL_WAIT))
        }
      })

    /**
     * Builds an empty volume's files under `staging` (slow for disks: mkfs runs here) and
     * says what they use: an empty directory volume uses nothing, so only a disk image
     * is measured.
     */
    const build = (spec: ValidSpec, staging: string): Effect.Effect<Option.Option<Usage.Usage>, StorageError> =>
      Effect.gen(function*() {
        if (spec.kind === "directory") {
          const data = NodePath.join(staging, Layout.DATA_DIR)
          yield* hostStep(`cannot create the data directory of volume "${spec.name}"`, () => {
            NodeFs.mkdirSync(data, { mode: 0o755 })
            NodeFs.chmodSync(data, 0o755)
          })
          return Option.some(Usage.zero)
        }
        const capacity = Option.getOrThrowWith(spec.capacityMib, () => new Error("validated disk spec without a size"))
        yield* formatDiskImage(NodePath.join(staging, Layout.DISK_IMAGE), capacity)
        return Option.none()
      })

    /** The usage of a volume built under `staging` (nothing else can see it yet). */
    const measureStaged = (spec: ValidSpec, staging: string) =>
      measureAt(spec.kind, staging, spec.name, false).pipe(
        Effect.catchTag("VolumeNotFound", (cause) =>
          new StorageError({ message: `the staged volume "${spec.name}" vanished while it was built`, cause }))
      )

    /** Makes the staged volume visible: rename into place, then mark the record ready. */
    const publish = (key: string, staging: string, self: Liveness.ProcessId, usage: Usage.Usage) =>
      Effect.gen(function*() {
        const target = Layout.volumeDir(layout, key)
        // We own the record, so whatever sits at the target is a leftover of a crash.
        const stale = yield* recovery.moveToTrash(target, key)
        if (Option.isSome(stale)) yield* recovery.discardTrash(stale.value)
        yield* hostStep(`cannot move the new volume into ${target}`, () => NodeFs.renameSync(staging, target))
        const now = yield* Clock.currentTimeMillis
        const generation = yield* accounts.newGeneration
        const updated = yield* sql<{ readonly key: string }>`UPDATE volumes
          SET state = 'ready', owner_pid = NULL, owner_start = NULL, used_bytes = ${usage.logicalBytes},
            allocated_bytes = ${usage.allocatedBytes}, files = ${usage.files}, usage_generation = ${generation},
            usage_stale = 0, measured_at = ${now}
          WHERE key = ${key} AND state = 'creating' AND owner_pid = ${self.pid} AND owner_start = ${self.start}
          RETURNING key`.pipe(orStorageError(`marking volume "${key}" ready`))
        if (updated.length === 0) {
          return yield* new StorageError({ message: `the record of volume "${key}" was taken over while it was created` })
        }
      })

    /** Undoes a failed or interrupted create: nothing of it may stay behind. */
    const abandon = (key: string, staging: string, self: Liveness.ProcessId) =>
      Effect.gen(function*() {
        yield* recovery.discardTrash(staging)
        const owned = yield* retryBusy(sql<{ readonly key: string }>`UPDATE volumes SET state = 'removing'
          WHERE key = ${key} AND state = 'creating' AND owner_pid = ${self.pid} AND owner_start = ${self.start}
          RETURNING key`)
        // If publishing got as far as the rename, the data goes before the record does.
        if (owned.length > 0) yield* recovery.finishRemoval(key)
      }).pipe(
        Effect.catchAll((error) =>
          Effect.logWarning(`could not undo the failed creation of volume "${key}"; it is discarded on next open`, error)
        )
      )

    /**
     * Creates a volume whose files `fill` puts into the fresh staging directory (an empty
     * volume, or a fork's copy). `fill` may say what the files use; otherwise they are
     * measured before they are published.
     */
    const createWith = <E>(
      spec: ValidSpec,
      fill: (staging: string) => Effect.Effect<Option.Option<Usage.Usage> | void, E>
    ) =>
      Effect.gen(function*() {
      const key = nameKey(spec.name)
      const self = yield* Liveness.current
      const staging = NodePath.join(layout.staging, Layout.stagingName(key, self))
      const createdAt = yield* Clock.currentTimeMillis
      // Only waiting and building are interruptible: every step that changes shared
      // state runs to completion, and a failure after the claim undoes the claim.
      return yield* Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          yield* claimName(spec, key, self, createdAt, restore)
          const usage = yield* restore(
            hostStep(`cannot create the staging directory ${staging}`, () =>
              NodeFs.mkdirSync(staging, { recursive: true, mode: 0o755 })).pipe(
                Effect.zipRight(fill(staging)),
                Effect.flatMap((known) =>
                  Option.isOption(known) && Option.isSome(known) ? Effect.succeed(known.value) : measureStaged(spec, staging)
                )
              )
          ).pipe(
            Effect.tap((used) => publish(key, staging, self, used)),
            Effect.onError(() => abandon(key, staging, self))
          )
          return toInfo({
            key,
            name: spec.name,
            kind: spec.kind,
            quota_mib: Option.getOrNull(spec.quotaMib),
            capacity_mib: Option.getOrNull(spec.capacityMib),
            labels: spec.labels,
            created_at: createdAt,
            used_bytes: usage.logicalBytes,
            allocated_bytes: usage.allocatedBytes,
            files: usage.files,
            usage_stale: 0,
            expires_at: null,
            last_used_at: null,
            state: "ready",
            owner_pid: null,
            owner_start: null
          }, usage)
        })
      )
    })

    const create = Effect.fn("LocalBackend.create")(function*(spec: ValidSpec) {
      return yield* createWith(spec, (staging) => build(spec, staging))
    })

    // ---- get / list ------------------------------------------------------------------

    const findReadyOrFail = (key: string, name: string) =>
      Effect.flatMap(
        findReady(key),
        Option.match({ onNone: () => Effect.fail(new VolumeNotFound({ volume: name })), onSome: Effect.succeed })
      )

    /** A measurement of a volume that may be removed meanwhile: then it is not found rather than broken. */
    const orGone = (key: string, name: string) => <A>(effect: Effect.Effect<A, StorageError | VolumeNotFound>) =>
      Effect.catchAll(effect, (error) =>
        Effect.flatMap(
          findReady(key),
          (still): Effect.Effect<never, StorageError | VolumeNotFound> =>
            Option.isSome(still) ? Effect.fail(error) : Effect.fail(new VolumeNotFound({ volume: name }))
        ))

    /** Walks a directory volume's files and stores the result as its account. */
    const remeasure = (row: VolumeRow) =>
      Effect.gen(function*() {
        const holders = yield* attachments.holders(row.key)
        // Temporary files of crashed writers go only while no sandbox can race the sweep.
        const usage = yield* measureAt(row.kind, Layout.volumeDir(layout, row.key), row.name, holders.length === 0).pipe(
          orGone(row.key, row.name)
        )
        // (plus the unspent quota grants of running file servers)
        return toInfo(row, yield* accounts.store(row.key, usage, holders.length > 0))
      })

    /**
     * The volume's report. A directory volume's usage comes from its account (this
     * instance's own recent changes added first), and the tree is walked only when the
     * account cannot be trusted: a sandbox held the volume, a writer died with changes
     * not yet counted, or `force`. A disk volume's usage is one `stat` of its image.
     */
    const report = (name: string, force: boolean) =>
      Effect.gen(function*() {
        const key = nameKey(name)
        yield* accounts.flush(key)
        const row = yield* findReadyOrFail(key, name)
        if (row.kind === "disk") {
          return toInfo(row, yield* diskUsage(Layout.diskImage(layout, key)).pipe(orGone(key, name)))
        }
        const stale = force || (yield* accounts.needsMeasure(key, { ...storedUsage(row), stale: row.usage_stale !== 0 }))
        return stale ? yield* remeasure(row) : toInfo(row, storedUsage(row))
      })

    const get = Effect.fn("LocalBackend.get")(function*(name: string) {
      return yield* report(name, false)
    })

    const measure = Effect.fn("LocalBackend.measure")(function*(name: string) {
      return yield* report(name, true)
    })

    /** The reports `list` made, handed out again for records that have not changed. */
    const reports = makeReportCache<VolumeInfo>()
    const reportOfRow = (row: VolumeRow) => toInfo(row, storedUsage(row))

    const list = accounts.flushAll.pipe(
      Effect.zipRight(selectRows("state = 'ready'", [], (values) => reports.reportOf(values, reportOfRow))),
      Effect.withSpan("LocalBackend.list")
    )

    // ---- remove ----------------------------------------------------------------------

    /** Puts the record back to `ready` when a removal failed before the data moved. */
    const revertRemoval = (key: string, self: Liveness.ProcessId) =>
      Effect.gen(function*() {
        if (!(yield* fs.exists(Layout.volumeDir(layout, key)).pipe(Effect.orElseSucceed(() => false)))) return
        yield* retryBusy(sql`UPDATE volumes SET state = 'ready', owner_pid = NULL, owner_start = NULL
          WHERE key = ${key} AND state = 'removing' AND owner_pid = ${self.pid} AND owner_start = ${self.start}`)
      }).pipe(Effect.ignore)

    const remove = Effect.fn("LocalBackend.remove")(function*(name: string) {
      const key = nameKey(name)
      const self = yield* Liveness.current
      for (let attempt = 0;; attempt++) {
        // One statement: a sandbox attaching at the same moment either is seen here or
        // finds the volume no longer ready.
        const claimed = yield* sql<{ readonly key: string }>`UPDATE volumes
          SET state = 'removing', owner_pid = ${self.pid}, owner_start = ${self.start}
          WHERE key = ${key} AND state = 'ready'
            AND NOT EXISTS (SELECT 1 FROM attachments WHERE key = ${key})
          RETURNING key`.pipe(orStorageError(`marking volume "${name}" for removal`))
        if (claimed.length > 0) {
          accounts.forget(key)
          writeLocks.forget(key)
          return yield* recovery.finishRemoval(key).pipe(Effect.tapError(() => revertRemoval(key, self)))
        }
        // Refused: by a holder, or by a holder whose process died (forgotten now, so the
        // next attempt succeeds), or the volume is not (or no longer) ready.
        yield* attachments.forgetDead(key)
        const row = yield* findRow(key)
        if (Option.isNone(row)) return yield* new VolumeNotFound({ volume: name })
        if (row.value.state !== "ready") {
          // Being created or removed: not a volume (yet, or any more). Clean it if abandoned.
          yield* recovery.takeOverAbandoned(row.value)
          return yield* new VolumeNotFound({ volume: name })
        }
        const holders = yield* attachments.holders(key)
        if (holders.length > 0 || attempt >= 3) return yield* new VolumeInUse({ volume: name, holders })
        // The holder let go between the two statements: try again.
      }
    }, Effect.uninterruptible)

    // ---- files -----------------------------------------------------------------------

    /**
     * Host-side access to a disk image is recorded as an attachment while the image is
     * mounted, so no sandbox attaches it meanwhile (and vice versa). The backend's mount
     * sessions share one mount, hence one attachment, among this instance's operations,
     * and keep it for `settings.diskIdleTimeToLive` after the last one (bursts pay for one mount).
     */
    const diskSessions = yield* makeDiskSessions({
      runDir: layout.run,
      acquireExclusive: (image) =>
        attachments.acquire(NodePath.basename(NodePath.dirname(image)), { holder: Attachments.HOST_FS_HOLDER, mode: "rw" }),
      idleTimeToLive: settings.diskIdleTimeToLive
    })

    /**
     * The attachments other holders (sandboxes) use: an idle host-side mount of the volume
     * in this instance is let go first, so it never refuses them.
     */
    const sharedAttachments: Attachments.Attachments = {
      ...attachments,
      acquire: (key, options) =>
        Effect.zipRight(RcMap.invalidate(diskSessions, Layout.diskImage(layout, key)), attachments.acquire(key, options))
    }

    /** Host-side changes move `lastUsedAt`, at most once a minute per volume (`useStamps.ts`). */
    const stampUse = UseStamps.make((name) => touch(name))

    const volumeFs = (info: VolumeInfo): VolumeFs => {
      const key = nameKey(info.name)
      const quotaBytes = Option.map(info.quotaMib, (mib) => mib * BYTES_PER_MIB)
      const used = stampUse(info.name)
      if (info.kind === "directory") {
        // The driver reports every change to the volume's usage account.
        const { account, onChange } = accounts.accountOf(key, info.name)
        return VolumeFsImpl.make({
          volume: info.name,
          driver: makeDirectoryDriver({ root: Layout.dataDir(layout, key), volume: info.name, onChange }),
          quotaBytes,
          writeLock: writeLocks.lockOf(key),
          account,
          used
        })
      }
      const driver: FsDriver = makeDiskDriver({
        image: Layout.diskImage(layout, key),
        volume: info.name,
        sessions: diskSessions
      })
      return VolumeFsImpl.make({ volume: info.name, driver, quotaBytes, writeLock: writeLocks.lockOf(key), used })
    }

    const path = Effect.fn("LocalBackend.path")(function*(info: VolumeInfo) {
      if (info.kind !== "directory") return yield* new Unsupported({ operation: "path of a disk volume", backend: "local" })
      const key = nameKey(info.name)
      const dir = Layout.dataDir(layout, key)
      const present = Option.isSome(yield* findReady(key)) &&
        (yield* hostStep(`cannot check ${dir}`, () => NodeFs.existsSync(dir)))
      if (!present) return yield* new VolumeNotFound({ volume: info.name })
      return dir
    })

    /** A ready volume as recorded, usage as last measured. */
    const find = (name: string) =>
      Effect.flatMap(findReady(nameKey(name)), Option.match({
        onNone: () => Effect.fail(new VolumeNotFound({ volume: name })),
        onSome: (row) => Effect.succeed(toInfo(row, storedUsage(row)))
      }))

    const snapshots = yield* LocalSnapshots.make({
      layout,
      attachments,
      recovery,
      find,
      measureAt: (kind, root, name) =>
        measureAt(kind, root, name, false).pipe(
          Effect.map((usage) => usage.logicalBytes),
          Effect.catchTag("VolumeNotFound", (cause) => new StorageError({ message: `the copy of "${name}" vanished`, cause }))
        ),
      createWith
    })

    /** Compare-and-set on the settings columns, so a concurrent update is re-applied, never lost. */
    const update: VolumeBackendService["update"] = (name, change) =>
      Effect.gen(function*() {
        const key = nameKey(name)
        for (;;) {
          const current = yield* get(name)
          const next = change(current)
          if (Either.isLeft(next)) return yield* next.left
          const labels = JSON.stringify(current.labels)
          const quota = Option.getOrNull(current.quotaMib)
          const expires = Option.getOrNull(Option.map(current.expiresAt, DateTime.toEpochMillis))
          const changed = yield* sql<{ readonly key: string }>`UPDATE volumes
            SET labels = ${JSON.stringify(next.right.labels)}, quota_mib = ${Option.getOrNull(next.right.quotaMib)},
              expires_at = ${Option.getOrNull(Option.map(next.right.expiresAt, DateTime.toEpochMillis))}
            WHERE key = ${key} AND state = 'ready' AND labels = ${labels} AND quota_mib IS ${quota}
              AND expires_at IS ${expires}
            RETURNING key`.pipe(orStorageError(`updating volume "${name}"`))
          if (changed.length > 0) {
            return new VolumeInfo({ ...current, ...next.right }, { disableValidation: true })
          }
        }
      }).pipe(Effect.withSpan("LocalBackend.update"))

    /** An idle host mount of the image goes first; a busy one makes the hold refuse (`VolumeInUse`). */
    const grow: VolumeBackendService["grow"] = (name, sizeMib) =>
      RcMap.invalidate(diskSessions, Layout.diskImage(layout, nameKey(name))).pipe(
        Effect.zipRight(resize.grow(name, sizeMib, get))
      )

    const rename = yield* Rename.make({
      journal: recovery.renames,
      attachments,
      takeOverAbandoned: recovery.takeOverAbandoned,
      release: (key) =>
        Effect.zipRight(accounts.flush(key), RcMap.invalidate(diskSessions, Layout.diskImage(layout, key))),
      forget: (key) => {
        accounts.forget(key)
        writeLocks.forget(key)
      },
      get
    })

    const touch = (name: string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        sql`UPDATE volumes SET last_used_at = ${now} WHERE key = ${nameKey(name)}`.pipe(
          orStorageError(`recording the use of volume "${name}"`),
          Effect.asVoid
        ))

    const service: VolumeBackendService = {
      backendKind: "local",
      create,
      get,
      measure,
      list,
      remove,
      getDefault: Effect.fail(new Unsupported({ operation: "getDefault", backend: "local" })),
      fs: volumeFs,
      update,
      grow,
      rename: (from, to) => Effect.withSpan(rename(from, to), "LocalBackend.rename"),
      touch,
      holders: touching({
        acquire: (name, holder, mode) => attachments.acquire(nameKey(name), { holder, mode }),
        list: (name) => attachments.holders(nameKey(name))
      }, touch),
      path,
      snapshots,
      quotaGrants: (name) => Grants.make(nameKey(name), name).pipe(Effect.provideService(SqlClient.SqlClient, sql))
    }
    return { service, attachments: sharedAttachments }
  })
